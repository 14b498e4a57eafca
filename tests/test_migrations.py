"""Migrations apply once, in order, under a lock; the audit log refuses to be rewritten."""

from __future__ import annotations

from pathlib import Path
from threading import Thread

import psycopg
import pytest

from app.db import migrate


def test_the_template_has_every_migration_and_reapplying_is_a_no_op(database: str, sql) -> None:
    versions = [m.version for m in migrate.discover()]
    assert [r[0] for r in sql("SELECT version FROM schema_migrations ORDER BY 1")] == versions
    assert migrate.apply(database) == []
    assert sql("SELECT extname FROM pg_extension WHERE extname = 'vector'") == [("vector",)]


def test_two_processes_migrating_a_new_database_at_once_apply_each_migration_once(
    postgres,
) -> None:
    target = postgres.fresh_database()
    with psycopg.connect(target, autocommit=True) as conn:  # start from nothing
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")
    results: list[list[migrate.Migration]] = []
    threads = [Thread(target=lambda: results.append(migrate.apply(target))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(len(r) for r in results) == [0, len(migrate.discover())]


def test_an_applied_migration_that_changed_stops_the_start(database: str, tmp_path: Path) -> None:
    for migration in migrate.discover():
        (tmp_path / f"{migration.name}.sql").write_text(migration.sql)
    first = tmp_path / f"{migrate.discover()[0].name}.sql"
    first.write_text(first.read_text() + "\n-- edited after the fact\n")
    with pytest.raises(migrate.MigrationError, match="changed after it was applied"):
        migrate.apply(database, migrate.discover(tmp_path))


def test_a_new_migration_is_applied_and_recorded(database: str, tmp_path: Path, sql) -> None:
    for migration in migrate.discover():
        (tmp_path / f"{migration.name}.sql").write_text(migration.sql)
    (tmp_path / "0999_notes.sql").write_text("CREATE TABLE notes (id int);")
    applied = migrate.apply(database, migrate.discover(tmp_path))
    assert [m.name for m in applied] == ["0999_notes"]
    assert sql("SELECT name FROM schema_migrations WHERE version = 999") == [("0999_notes",)]


@pytest.mark.parametrize(
    "statement",
    ["UPDATE audit_log SET actor = 'someone else'", "DELETE FROM audit_log", "TRUNCATE audit_log"],
)
def test_the_audit_log_is_append_only(database: str, sql, statement: str) -> None:
    sql("INSERT INTO audit_log (actor, action) VALUES ('tester', 'test.appended')")
    with (
        psycopg.connect(database, autocommit=True) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"),
    ):
        conn.execute(statement.encode())
    assert sql("SELECT actor, action FROM audit_log") == [("tester", "test.appended")]
