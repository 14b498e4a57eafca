"""Loops that run beside the work until the process stops, and a stop that reaches them.

A loop that catches `Exception` to outlive a passing failure can swallow its own
cancellation: psycopg, asked to stop mid-query, may answer the cancellation with its own
error (the query was cancelled), which such a loop logs before sleeping again. The task is
then marked "cancelling" but runs on, and the process's stop waited on it until the hard
exit 25 s later (seen once in a CI run: `persais worker` exited 1 on SIGTERM). Here a loop
looks at its task after a failure and stops if a stop was asked meanwhile, and `stop`
repeats the request to a task that still runs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

log = logging.getLogger(__name__)
RECANCEL_SECONDS = 1.0


def stop_asked() -> bool:
    """True in a task that was cancelled, even if something caught the CancelledError."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def every(seconds: float, work: Callable[[], Awaitable[object]], what: str) -> None:
    """Run `work` every `seconds` until cancelled; a failure is logged and tried next time."""
    while True:
        await asyncio.sleep(seconds)
        try:
            await work()
        except Exception:
            if stop_asked():
                raise asyncio.CancelledError from None
            log.exception("%s failed", what)


async def stop(tasks: Iterable[asyncio.Task[Any]], within: float) -> set[asyncio.Task[Any]]:
    """Cancel `tasks` and wait up to `within` s for them, asking again every second a task
    that still runs; return those that outlived it (named in the log with where they were)."""
    pending = {task for task in tasks if not task.done()}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while pending:
        for task in pending:
            task.cancel()
        left = deadline - loop.time()
        if left <= 0:
            break
        _, pending = await asyncio.wait(pending, timeout=min(RECANCEL_SECONDS, left))
    for task in pending:
        log.warning("%s did not stop within %.0f s", task.get_name(), within)
        task.print_stack(limit=8)
    return pending
