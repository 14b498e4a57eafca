"""Versioned schema migrations.

A migration is a file in `app/db/migrations/` named `NNNN_description.sql`, or
`NNNN_description.ref` naming a SQL file shipped inside a library (`package:path`), which is
how the job queue's own schema comes in at the version we pin. All pending migrations are
applied in one transaction under an advisory lock, so two processes starting together apply
them once; each is recorded with its checksum, and a migration edited after it was applied
stops the start-up instead of being silently skipped. Schema work done by a library at start
(LangGraph's checkpoint tables) takes the same lock, through `schema_lock`.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import tuple_row

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_NAME_RE = re.compile(r"^(\d{4})_[a-z0-9_]+\.(sql|ref)$")
# An arbitrary constant: the advisory lock that serialises migrations across processes.
_LOCK_KEY = 0x7065_7273_6169_73
_LOCK_POLL_SECONDS = 0.1


class MigrationError(RuntimeError):
    pass


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found: list[Migration] = []
    for path in sorted(directory.iterdir()):
        match = _NAME_RE.match(path.name)
        if match is None:
            continue
        text = path.read_text()
        if match.group(2) == "ref":
            package, _, resource = text.strip().partition(":")
            text = resources.files(package).joinpath(resource).read_text()
        found.append(Migration(version=int(match.group(1)), name=path.stem, sql=text))
    versions = [m.version for m in found]
    if len(versions) != len(set(versions)):
        raise MigrationError(f"two migrations share a version number in {directory}")
    return found


_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text        NOT NULL,
    checksum   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True)
class MigrationStatus:
    applied: list[int]
    pending: list[int]


def status(conn: psycopg.Connection, migrations: list[Migration] | None = None) -> MigrationStatus:
    migrations = discover() if migrations is None else migrations
    exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    applied: set[int] = set()
    if exists and exists[0]:
        applied = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
    return MigrationStatus(
        applied=sorted(applied),
        pending=[m.version for m in migrations if m.version not in applied],
    )


def apply(conninfo: str, migrations: list[Migration] | None = None) -> list[Migration]:
    """Apply what is pending; return what was applied (empty when up to date)."""
    migrations = discover() if migrations is None else migrations
    with psycopg.connect(conninfo) as conn:
        while True:  # polled, not waited for in a statement: see `schema_lock`
            with conn.transaction():
                taken = conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (_LOCK_KEY,))
                if (row := taken.fetchone()) is not None and row[0]:
                    return _apply_pending(conn, migrations)
            time.sleep(_LOCK_POLL_SECONDS)


def _apply_pending(conn: psycopg.Connection, migrations: list[Migration]) -> list[Migration]:
    conn.execute(_CREATE_TABLE)
    recorded = {
        row[0]: (row[1], row[2])
        for row in conn.execute("SELECT version, name, checksum FROM schema_migrations")
    }
    done: list[Migration] = []
    for migration in migrations:
        if migration.version in recorded:
            name, checksum = recorded[migration.version]
            if checksum != migration.checksum:
                raise MigrationError(
                    f"migration {name} changed after it was applied; "
                    "add a new migration instead of editing an applied one"
                )
            continue
        try:
            conn.execute(migration.sql.encode())
        except psycopg.errors.InsufficientPrivilege as exc:
            # Most often `CREATE EXTENSION vector` by a role that may not (docs/postgres.md).
            raise MigrationError(
                f"migration {migration.name}: {str(exc).splitlines()[0]} — as a superuser, run"
                " the statement once in this database (CREATE EXTENSION vector), then migrate"
            ) from None
        conn.execute(
            "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
            (migration.version, migration.name, migration.checksum),
        )
        done.append(migration)
    return done


@asynccontextmanager
async def schema_lock(conn: psycopg.AsyncConnection[Any]) -> AsyncIterator[None]:
    """Hold the migrations' lock on `conn` (autocommit) while a library sets up its own
    tables: processes starting together on a fresh database would otherwise race on its
    `CREATE TABLE IF NOT EXISTS`.

    The lock is polled for. A session blocked in `pg_advisory_lock` holds a snapshot, and
    LangGraph's `CREATE INDEX CONCURRENTLY`, run by the holder on another connection, waits
    for every older snapshot to end: a wait Postgres cannot see as a deadlock."""
    async with conn.cursor(row_factory=tuple_row) as cur:
        while True:
            await cur.execute("SELECT pg_try_advisory_lock(%s)", (_LOCK_KEY,))
            if (taken := await cur.fetchone()) is not None and taken[0]:
                break
            await asyncio.sleep(_LOCK_POLL_SECONDS)
    try:
        yield
    finally:
        await conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
