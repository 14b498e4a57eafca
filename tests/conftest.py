from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from app.settings import Settings
from tests.support.config import make_settings
from tests.support.postgres import TestPostgres


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestPostgres]:
    pg = TestPostgres(tmp_path_factory.mktemp("pg"))
    yield pg
    pg.stop()


@pytest.fixture
def database(postgres: TestPostgres) -> str:
    """The conninfo of a fresh, migrated database for this test alone."""
    return postgres.fresh_database()


@pytest.fixture
def settings(tmp_path: Path, database: str) -> Settings:
    return make_settings(tmp_path / "home", database)


@pytest.fixture
def sql(database: str) -> Iterator[Callable[..., list[tuple[Any, ...]]]]:
    """Run a query against this test's database and return its rows."""
    with psycopg.connect(database, autocommit=True) as conn:

        def run(query: str, *params: Any) -> list[tuple[Any, ...]]:
            cur = conn.execute(query.encode(), params or None)
            return cur.fetchall() if cur.description else []

        yield run
