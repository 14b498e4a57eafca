"""Which Postgres Persais uses, and the connection pool the rest of the code borrows from.

`DATABASE_URL` names an external server (it must offer pgvector); without it Persais starts
the embedded one in PERSAIS_HOME. Either way the schema is brought up to date before the
process serves anything.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from app.db import migrate
from app.db.embedded import EmbeddedPostgres, start_embedded
from app.settings import Settings


class DatabaseError(RuntimeError):
    """The database cannot be used; the message says why and what to do."""


@dataclass
class Database:
    """Where the database is. The pool that borrows from it belongs to the `Runtime`."""

    conninfo: str
    embedded: EmbeddedPostgres | None = None
    server_version: str = ""  # set by `connect`, which checked the server

    @property
    def kind(self) -> str:
        return "embedded" if self.embedded else "external"

    def release(self) -> None:
        """Let go of the embedded server (it stops when no other process holds it)."""
        if self.embedded is not None:
            self.embedded.stop()
            self.embedded = None


def connect(settings: Settings) -> Database:
    """Find the database, check it can serve Persais, and return a handle (no pool yet)."""
    if settings.database_url is not None:
        db = Database(conninfo=settings.database_url.get_secret_value())
    else:
        embedded = start_embedded(settings.home)
        db = Database(conninfo=embedded.conninfo, embedded=embedded)
    db.server_version = check_server(db.conninfo)
    return db


def check_server(conninfo: str) -> str:
    """Return the server version; raise `DatabaseError` when it is unreachable or lacks pgvector."""
    try:
        with psycopg.connect(conninfo, connect_timeout=10) as conn:
            row = conn.execute(
                "SELECT current_setting('server_version'),"
                " (SELECT default_version FROM pg_available_extensions WHERE name = 'vector')"
            ).fetchone()
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DatabaseError(f"cannot connect to the database: {first}") from None
    assert row is not None
    version, vector = row
    if vector is None:
        raise DatabaseError(
            f"the database (PostgreSQL {version}) does not offer the pgvector extension; "
            "install pgvector on it or unset DATABASE_URL to use the embedded Postgres"
        )
    return str(version)


def migrate_to_latest(db: Database) -> list[migrate.Migration]:
    return migrate.apply(db.conninfo)
