"""docs/postgres.md's steps against a real server (the session's embedded Postgres, reached
through `DATABASE_URL` as an external one): a role that may not create pgvector, an admin
creating it, and the `persais doctor` line the guide quotes."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import conninfo as pg_conninfo
from psycopg import sql

from tests.support import postgres as test_postgres

GUIDE = (Path(__file__).resolve().parent.parent / "docs" / "postgres.md").read_text()


@pytest.fixture
def unprivileged(postgres: test_postgres.TestPostgres) -> Iterator[tuple[str, str]]:
    """(the role's DATABASE_URL, the admin's conninfo) for a new database the role owns,
    without the vector extension."""
    name = f"ext_{secrets.token_hex(4)}"
    admin = postgres.conninfo_for("postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'pw'").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {0} OWNER {0}").format(sql.Identifier(name)))
    params = pg_conninfo.conninfo_to_dict(postgres.conninfo_for(name))
    params.update(user=name, password="pw")
    yield pg_conninfo.make_conninfo(**params), postgres.conninfo_for(name)  # type: ignore[arg-type]
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def persais(database_url: str, cwd: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PERSAIS_", "GITHUB_"))}
    env.update(DATABASE_URL=database_url, PERSAIS_HOME=str(cwd / "home"))
    return subprocess.run(
        [sys.executable, "-m", "app", *argv],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def database_line(done: subprocess.CompletedProcess[str]) -> str:
    (line,) = [x for x in done.stdout.splitlines() if x.startswith("database ")]
    return line


@pytest.mark.slow
def test_the_guides_steps_on_a_server_where_the_role_may_not_create_pgvector(
    tmp_path: Path, unprivileged: tuple[str, str]
) -> None:
    url, admin = unprivileged

    before = persais(url, tmp_path, "doctor", "--offline")
    pending = database_line(before)
    assert re.fullmatch(
        r"database +ok +external PostgreSQL [\d.]+ with pgvector, \d+ migrations pending"
        r" \(persais migrate\)",
        pending,
    ), pending

    refused = persais(url, tmp_path, "migrate")
    assert refused.returncode == 1
    assert "Traceback" not in refused.stderr
    (line,) = refused.stderr.strip().splitlines()
    assert line == (
        'persais: database: migration 0001_spine: permission denied to create extension "vector"'
        " — as a superuser, run the statement once in this database (CREATE EXTENSION vector),"
        " then migrate"
    )
    assert " ".join(line.removeprefix("persais: ").split()) in " ".join(GUIDE.split())

    with psycopg.connect(admin, autocommit=True) as conn:  # the guide's step 2, as an admin
        conn.execute("CREATE EXTENSION vector")
    migrated = persais(url, tmp_path, "migrate")
    assert migrated.returncode == 0, migrated.stderr

    after = database_line(persais(url, tmp_path, "doctor", "--offline"))
    version = re.search(r"PostgreSQL ([\d.]+)", after)
    assert version is not None, after
    assert after.replace(version.group(1), "16.2") in GUIDE  # the line the guide quotes
