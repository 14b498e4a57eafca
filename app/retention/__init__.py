"""Retention: what Persais keeps, and the periodic prune that removes the rest.

Nothing else ever shrinks the database: every delivery, queue job, checkpoint, shown
message and decided question would stay forever. A periodic task (`app.worker.queue`,
one worker per run) calls `run`, which takes each kind of record in turn (`steps`), each
in its own short transactions of bounded batches, so one failing step never stops the
others. The audit log and the release ledger are append-only by design and never pruned.
"""

from app.retention.policy import Place, Policy
from app.retention.run import Outcome, run

__all__ = ["Outcome", "Place", "Policy", "run"]
