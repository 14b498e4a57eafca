"""Job traces: every finished Mechanic job, kept so the next similar request learns from it.

A trace holds the request, the plan, the files, a diff summary, how the job ended, its
repair rounds and the last problems, and later whether it was deployed or rolled back.
Similar past jobs that went well are shown to the planner and to Aider as examples; the
ones that failed, were aborted or rolled back, as warnings.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from app.memory import embeddings
from app.memory.embeddings import Embedder
from app.memory.search import reciprocal_ranks
from app.memory.words import CONFIG, searchable

SIMILAR = 3  # examples, and warnings, at most
MIN_SIMILARITY = 0.5  # cosine: below it a past job is not "like" this one


@dataclass(frozen=True)
class Trace:
    job_id: str
    request: str
    plan: dict[str, Any] | None
    files: tuple[str, ...]
    diff_summary: str
    outcome: str  # opened | failed | refused | aborted
    rounds: int
    problems: str
    deployed: bool
    rolled_back: bool
    rollback_reason: str | None

    @property
    def went_well(self) -> bool:
        return self.outcome == "opened" and not self.rolled_back

    def text(self) -> str:
        """The trace as a prompt shows it (and as it is embedded)."""
        plan = self.plan or {}
        lines = [f"Request: {self.request[:500]}"]
        if plan:
            lines.append(
                f"Plan: {plan.get('kind')} {plan.get('name')} (/{plan.get('command')}):"
                f" {plan.get('description')}"
            )
            command = plan.get("command")
            for example in plan.get("behaviour") or []:
                lines.append(f"  /{command} {example.get('say')} -> {example.get('expect')}")
        if self.files:
            lines.append("Files: " + ", ".join(self.files))
        if self.diff_summary:
            lines.append("Diff: " + self.diff_summary[:300])
        ending = {"opened": "validated, pull request opened", "failed": "failed",
                  "refused": "refused by the policy", "aborted": "aborted"}.get(
                      self.outcome, self.outcome)  # fmt: skip
        ending += f" after {self.rounds} repair round(s)"
        if self.deployed:
            ending += "; deployed"
        if self.rolled_back:
            ending += f"; rolled back ({self.rollback_reason or 'no reason given'})"
        lines.append("Outcome: " + ending)
        if self.problems and not self.went_well:
            lines.append("Problems: " + self.problems[:600])
        return "\n".join(lines)

    @property
    def content_hash(self) -> str:
        return hashlib.sha256(self.text().encode()).hexdigest()


_COLUMNS = (
    "job_id, request, plan, files, diff_summary, outcome, rounds, problems,"
    " deployed_at IS NOT NULL, rolled_back_at IS NOT NULL, rollback_reason"
)


async def record(
    conn: AsyncConnection[Any], trace: Trace, repository: str, embedder: Embedder | None = None
) -> None:
    """Store (or, for a job that ran again, replace) the trace of a finished job."""
    words = searchable(f"{trace.request} {_plan_words(trace.plan)} {' '.join(trace.files)}")
    await conn.execute(
        "INSERT INTO job_traces (job_id, repository, request, plan, files, diff_summary,"
        " outcome, rounds, problems, content_hash, search) VALUES"
        " (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, to_tsvector(%s, %s))"
        " ON CONFLICT (job_id) DO UPDATE SET plan = EXCLUDED.plan, files = EXCLUDED.files,"
        " diff_summary = EXCLUDED.diff_summary, outcome = EXCLUDED.outcome,"
        " rounds = EXCLUDED.rounds, problems = EXCLUDED.problems,"
        " content_hash = EXCLUDED.content_hash, search = EXCLUDED.search, finished_at = now()",
        (trace.job_id, repository, trace.request, Jsonb(trace.plan) if trace.plan else None,
         list(trace.files), trace.diff_summary, trace.outcome, trace.rounds, trace.problems,
         trace.content_hash, CONFIG, words),
    )  # fmt: skip
    if embedder is not None:
        await _embed(conn, embedder, trace)


async def _embed(conn: AsyncConnection[Any], embedder: Embedder, trace: Trace) -> None:
    if await embeddings.missing(conn, embedder.model, [trace.content_hash]):
        vectors = await embedder.embed([trace.text()])
        await embeddings.store(conn, embedder.model, [(trace.content_hash, vectors[0])])


async def deployed(conn: AsyncConnection[Any], job_id: str) -> None:
    await conn.execute(
        "UPDATE job_traces SET deployed_at = coalesce(deployed_at, now()) WHERE job_id = %s",
        (job_id,),
    )


async def aborted(conn: AsyncConnection[Any], job_id: str) -> None:
    """A job whose pull request was withdrawn after all: it did not go well."""
    await conn.execute("UPDATE job_traces SET outcome = 'aborted' WHERE job_id = %s", (job_id,))


async def rolled_back(conn: AsyncConnection[Any], job_id: str, reason: str | None) -> None:
    await conn.execute(
        "UPDATE job_traces SET rolled_back_at = now(), rollback_reason = %s WHERE job_id = %s",
        (reason, job_id),
    )


async def get(conn: AsyncConnection[Any], job_id: str) -> Trace | None:
    cur = await conn.execute(f"SELECT {_COLUMNS} FROM job_traces WHERE job_id = %s", (job_id,))  # noqa: S608
    row = await cur.fetchone()
    return _trace(row) if row else None


async def similar(
    conn: AsyncConnection[Any], repository: str, request: str, *,
    embedder: Embedder | None = None, exclude: str | None = None,
) -> tuple[list[Trace], list[Trace]]:  # fmt: skip
    """(examples, warnings): past jobs like `request` that went well, and that did not.
    By shared words (at least half of the request's, and two), and, with embeddings,
    by nearness; fused by rank."""
    cur = await conn.execute(
        f"""
        WITH q AS (
            SELECT quote_literal(w)::tsquery AS q
            FROM unnest(tsvector_to_array(to_tsvector(%(config)s::regconfig, %(words)s))) AS w
        ), wanted AS (SELECT string_agg(q::text, ' | ')::tsquery AS q, count(*) AS n FROM q)
        SELECT {_COLUMNS}, (SELECT count(*) FROM q WHERE t.search @@ q.q) AS matched, w.n
        FROM job_traces t CROSS JOIN wanted w
        WHERE t.repository = %(repo)s AND w.q IS NOT NULL AND t.search @@ w.q
          AND t.outcome <> 'question' AND t.job_id <> coalesce(%(exclude)s, '')
        ORDER BY ts_rank(t.search, w.q, 1) DESC LIMIT 20
        """,  # noqa: S608 - the only interpolation is the fixed column list
        {"config": CONFIG, "words": searchable(request), "repo": repository,
         "exclude": exclude},
    )  # fmt: skip
    rows = await cur.fetchall()
    ranked = [
        _trace(row)
        for row in rows
        if int(row[11]) >= max(2, math.ceil(int(row[12]) / 2)) or int(row[12]) == int(row[11]) == 1
    ]
    if embedder is not None:
        near = await _nearest(conn, repository, request, embedder, exclude)
        known = {t.job_id: t for t in ranked + near}
        order = reciprocal_ranks([t.job_id for t in ranked], [t.job_id for t in near])
        ranked = [known[job_id] for job_id in order]
    examples = [t for t in ranked if t.went_well][:SIMILAR]
    warnings = [t for t in ranked if not t.went_well][:SIMILAR]
    return examples, warnings


async def _nearest(
    conn: AsyncConnection[Any], repository: str, request: str, embedder: Embedder,
    exclude: str | None,
) -> list[Trace]:  # fmt: skip
    vector = (await embedder.embed([request]))[0]
    cur = await conn.execute(
        f"""
        WITH mine AS MATERIALIZED (
            SELECT t.*, v.embedding FROM job_traces t JOIN memory_vectors v
              ON v.content_hash = t.content_hash AND v.model = %(model)s AND v.dims = %(dims)s
            WHERE t.repository = %(repo)s AND t.outcome <> 'question'
              AND t.job_id <> coalesce(%(exclude)s, '')
        )
        SELECT {_COLUMNS}, 1 - (embedding <=> %(v)s::vector) AS similarity FROM mine
        ORDER BY similarity DESC LIMIT 10
        """,  # noqa: S608 - the only interpolation is the fixed column list
        {"model": embedder.model, "dims": len(vector), "repo": repository, "exclude": exclude,
         "v": embeddings.literal(vector)},
    )  # fmt: skip
    return [_trace(row) for row in await cur.fetchall() if float(row[11]) > MIN_SIMILARITY]


def _plan_words(plan: dict[str, Any] | None) -> str:
    if not plan:
        return ""
    return " ".join(str(plan.get(k) or "") for k in ("kind", "name", "command", "description"))


def _trace(row: tuple[Any, ...]) -> Trace:
    return Trace(
        str(row[0]), str(row[1]), row[2], tuple(row[3] or ()), str(row[4] or ""), str(row[5]),
        int(row[6]), str(row[7] or ""), bool(row[8]), bool(row[9]), row[10],
    )  # fmt: skip
