"""One embedded Postgres for the whole test session, and a fresh database per test.

Migrations are applied once to a template database; each test gets `CREATE DATABASE ...
TEMPLATE`, which costs tens of milliseconds and isolates tests completely.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import psycopg
from psycopg import conninfo as pg_conninfo
from psycopg import sql

from app.db import migrate
from app.db.embedded import EmbeddedPostgres, start_embedded

TEMPLATE = "persais_template"


class TestPostgres:
    def __init__(self, home: Path) -> None:
        self.server: EmbeddedPostgres = start_embedded(home)
        self._names = itertools.count(1)
        self._admin = self.conninfo_for("postgres")
        with psycopg.connect(self._admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(TEMPLATE)))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(TEMPLATE)))
        migrate.apply(self.conninfo_for(TEMPLATE))

    def conninfo_for(self, dbname: str) -> str:
        params = pg_conninfo.conninfo_to_dict(self.server.conninfo)
        params["dbname"] = dbname
        return pg_conninfo.make_conninfo(**params)  # type: ignore[arg-type]

    def fresh_database(self) -> str:
        name = f"test_{next(self._names)}"
        with psycopg.connect(self._admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                    sql.Identifier(name), sql.Identifier(TEMPLATE)
                )
            )
        return self.conninfo_for(name)

    def stop(self) -> None:
        self.server.stop()
