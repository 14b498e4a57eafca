"""What every command needs to run: the database, a runtime, conversations, and a clean exit."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from app.db.database import Database, DatabaseError, connect, migrate_to_latest
from app.db.embedded import EmbeddedDatabaseError
from app.db.migrate import Migration, MigrationError
from app.runtime import Runtime
from app.settings import Settings

if TYPE_CHECKING:  # LangGraph and the agents load only in the commands that converse
    from app.conversations import Conversations

T = TypeVar("T")
log = logging.getLogger("persais")


class Exit(Exception):
    """Stop the command with this exit code and one line for the person."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def open_database(settings: Settings, *, applied: list[Migration] | None = None) -> Database:
    """Connect (starting the embedded server if need be) and bring the schema up to date;
    the migrations applied are logged, and appended to `applied` when given."""
    try:
        db = connect(settings)
        try:
            done = migrate_to_latest(db)
        except MigrationError:
            db.release()
            raise
    except (DatabaseError, EmbeddedDatabaseError, MigrationError) as exc:
        raise Exit(1, f"database: {exc}") from None
    for migration in done:
        log.info("applied migration %s", migration.name)
    if applied is not None:
        applied += done
    return db


def with_runtime(
    settings: Settings,
    body: Callable[[Runtime], Awaitable[T]],
    *,
    worker_queues: tuple[str, ...] = (),
) -> T:
    """Run `body` with an open pool and queue; a worker only on `worker_queues`."""
    db = open_database(settings)

    async def run() -> T:
        runtime = Runtime(settings, db.conninfo)
        if worker_queues:
            runtime.worker_queues = worker_queues
        await runtime.start(worker=bool(worker_queues))
        try:
            return await body(runtime)
        finally:
            await runtime.stop()

    try:
        return asyncio.run(run())
    finally:
        db.release()


def with_conversations(
    settings: Settings,
    body: Callable[[Conversations], Awaitable[T]],
    *,
    worker_queues: tuple[str, ...] = (),
) -> T:
    async def run(runtime: Runtime) -> T:
        return await body(await runtime.conversations())

    return with_runtime(settings, run, worker_queues=worker_queues)
