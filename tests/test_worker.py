"""The worker: at-least-once with retries, dead deliveries, replay, stalled jobs."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import psycopg

from app.routing import Context, Event, Router
from app.runtime import Runtime
from app.settings import Settings
from tests.support.server import client_for, running_server
from tests.support.waiting import wait_for
from tests.support.webhooks import example, post_github


def flaky_router(failures: int) -> tuple[Router, list[str]]:
    """A router whose `star` handler fails `failures` times, then succeeds."""
    router = Router()
    calls: list[str] = []

    @router.register("star", "created")
    async def star(event: Event, ctx: Context) -> None:
        calls.append(event.delivery_id)
        if len(calls) <= failures:
            raise ConnectionError(f"upstream unavailable (call {len(calls)})")

    return router, calls


def test_a_failing_handler_is_retried_until_it_succeeds(
    settings: Settings, database: str, sql
) -> None:
    router, calls = flaky_router(failures=2)  # max attempts is 3 in tests
    with running_server(settings, database, router=router) as (url, _), client_for(url) as c:
        assert post_github(c, "star", example("star", "created"), delivery="s-1").status_code == 202
        wait_for(lambda: sql("SELECT 1 FROM inbox WHERE status = 'processed'"), 30)
    assert calls == ["s-1"] * 3
    assert sql("SELECT attempts, handled_count, last_error FROM inbox") == [(3, 1, None)]


def test_a_delivery_that_keeps_failing_is_parked_dead_and_can_be_replayed(
    settings: Settings, database: str, sql, tmp_path
) -> None:
    router, calls = flaky_router(failures=3)
    with running_server(settings, database, router=router) as (url, _), client_for(url) as c:
        assert post_github(c, "star", example("star", "created"), delivery="s-2").status_code == 202
        wait_for(lambda: sql("SELECT 1 FROM inbox WHERE status = 'dead'"), 30)
        status, attempts, error = sql("SELECT status, attempts, last_error FROM inbox")[0]
        assert (status, attempts) == ("dead", 3)
        assert "ConnectionError: upstream unavailable (call 3)" in error

        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("GITHUB", "TELEGRAM"))},
            "DATABASE_URL": database,
            "PERSAIS_HOME": str(tmp_path / "cli-home"),
        }
        listed = run_cli(["inbox", "list", "--dead"], env)
        assert "dead" in listed.stdout
        assert "star.created" in listed.stdout
        assert "ConnectionError" in listed.stdout

        replayed = run_cli(["inbox", "replay", str(sql("SELECT id FROM inbox")[0][0])], env)
        assert replayed.returncode == 0, replayed.stderr
        wait_for(lambda: sql("SELECT 1 FROM inbox WHERE status = 'processed'"), 30)
        assert run_cli(["inbox", "replay", "1"], env).returncode == 1  # nothing to replay now
    assert len(calls) == 4
    assert sql("SELECT subject FROM audit_log WHERE action = 'inbox.replay'") == [("inbox:1",)]


def run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", *args], capture_output=True, text=True, env=env, timeout=60
    )


def test_a_job_left_running_by_a_dead_worker_is_taken_up_again(
    settings: Settings, database: str, sql
) -> None:
    """A worker SIGKILLed mid-job leaves its job in `doing`; the sweeper puts it back."""
    with running_server(settings, database, worker=False) as (url, _), client_for(url) as c:
        assert post_github(c, "ping", example("ping"), delivery="p-1").status_code == 202
    # What a killed worker leaves behind: the job taken, a heartbeat that stopped long ago.
    with psycopg.connect(database, autocommit=True) as conn:
        dead = conn.execute(
            "INSERT INTO procrastinate_workers (last_heartbeat)"
            " VALUES (now() - interval '10 minutes') RETURNING id"
        ).fetchone()
        assert dead is not None
        conn.execute("UPDATE procrastinate_jobs SET status = 'doing', worker_id = %s", dead)

    async def work() -> None:
        runtime = Runtime(settings, database)
        await runtime.start(worker=True)
        try:
            for _ in range(400):
                if sql("SELECT 1 FROM inbox WHERE status = 'processed'"):
                    return
                await asyncio.sleep(0.05)
        finally:
            await runtime.stop()

    asyncio.run(work())
    assert sql("SELECT status, handled_count FROM inbox") == [("processed", 1)]
    assert sql(
        "SELECT status FROM procrastinate_jobs WHERE task_name = 'persais.process_delivery'"
    ) == [("succeeded",)]


def test_a_stalled_job_that_cannot_go_back_is_closed_and_the_sweep_goes_on(
    settings: Settings, database: str, sql
) -> None:
    """Killed while the index ran: the restart queued a new index run under the same
    queueing lock, so the old one can never return to `todo`. It is closed with its reason,
    and the delivery the dead worker left beside it is still processed."""
    lock = "memory:octo/elsewhere"
    with psycopg.connect(database, autocommit=True) as conn:
        dead = conn.execute(
            "INSERT INTO procrastinate_workers (last_heartbeat)"
            " VALUES (now() - interval '10 minutes') RETURNING id"
        ).fetchone()
        assert dead is not None
        insert = (
            "INSERT INTO procrastinate_jobs (queue_name, task_name, lock, queueing_lock, args,"
            " status, worker_id, scheduled_at) VALUES ('mechanic', 'persais.index', %s, %s,"
            ' \'{"repository": "octo/elsewhere"}\', %s, %s, %s) RETURNING id'
        )
        old = conn.execute(insert, (lock, lock, "doing", dead[0], None)).fetchone()
        # The run queued at restart, due later so that this test's worker leaves it waiting.
        later = datetime.now(UTC) + timedelta(hours=1)
        newer = conn.execute(insert, (None, lock, "todo", None, later)).fetchone()
        assert old is not None
        assert newer is not None
    with running_server(settings, database, worker=False) as (url, _), client_for(url) as c:
        assert post_github(c, "ping", example("ping"), delivery="p-2").status_code == 202
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(
            "UPDATE procrastinate_jobs SET status = 'doing', worker_id = %s"
            " WHERE task_name = 'persais.process_delivery'",
            dead,
        )

    async def work() -> None:
        runtime = Runtime(settings, database)
        await runtime.start(worker=True)
        try:
            for _ in range(400):
                if sql("SELECT 1 FROM inbox WHERE status = 'processed'") and sql(
                    "SELECT 1 FROM audit_log WHERE action = 'job.closed'"
                ):
                    return
                await asyncio.sleep(0.05)
        finally:
            await runtime.stop()

    asyncio.run(work())
    assert sql("SELECT status, handled_count FROM inbox") == [("processed", 1)]
    assert sql(
        "SELECT id, status FROM procrastinate_jobs WHERE queueing_lock = %s ORDER BY id", lock
    ) == [
        (old[0], "failed"),
        (newer[0], "todo"),
    ]
    [(subject, detail)] = sql("SELECT subject, detail FROM audit_log WHERE action = 'job.closed'")
    assert subject == f"job:{old[0]}"
    assert detail == {
        "task": "persais.index",
        "reason": f"superseded: a newer job waits under queueing lock {lock}",
    }
