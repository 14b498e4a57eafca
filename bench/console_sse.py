"""The console's Jobs page: how soon a progress step reaches a browser over SSE, and what the
Jobs pages cost with 1,000 jobs.

    .venv/bin/python bench/console_sse.py [--events 50] [--watchers 10] [--jobs 1000]

The real web app (`create_app`, no worker) under uvicorn on loopback, on an embedded Postgres
seeded with `--jobs` Mechanic jobs (8 progress steps each). `--watchers` SSE clients (threads,
each its own connection, as browsers are) watch one running job; the bench then says
`--events` stages through the chat's own progress writer (`ChatProgress`: the outbox row and
the `job_events` row in one transaction, whose trigger notifies), one every `--interval`
seconds, and each client notes when the step's event arrives. Latency is from the moment the
write's transaction has committed to the event's arrival, per client and step.

Page times are wall time of a GET over loopback (the server's whole work plus one local round
trip), `--repeat` times each after one warm-up.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg_pool import AsyncConnectionPool

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.mechanic_jobs.progress import ChatProgress  # noqa: E402
from tests.support.config import make_settings  # noqa: E402
from tests.support.console import mint_link  # noqa: E402
from tests.support.postgres import TestPostgres  # noqa: E402
from tests.support.server import running_server  # noqa: E402

STAGES = ["plan", "scaffold", "code", "validate (round 1/4)", "repair 1/3",
          "validate (round 2/4)", "push", "pull request"]  # fmt: skip
WATCHED = "be7c0000"


def seed(database: str, jobs: int) -> None:
    statuses = ["opened", "failed", "deployed", "aborted", "refused", "question"]
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO jobs (id, conversation, requested_by, request, status, plan, rounds,"
            " cost, transcript, message, created_at, updated_at)"
            " SELECT 'b' || lpad(n::text, 7, '0'), 'tg:' || (n %% 40), 'tg:' || (n %% 40),"
            " 'Create an agent Echo' || n || ' that repeats my messages, politely', "
            ' (%s::text[])[1 + n %% 6], \'{"kind": "agent", "name": "echo"}\'::jsonb,'
            " n %% 3, n * 0.0001, repeat('aider says things ', 2000), 'done',"
            " now() - make_interval(mins => n), now() - make_interval(mins => n)"
            " FROM generate_series(1, %s) n",
            (statuses, jobs),
        )
        conn.execute(
            "INSERT INTO job_events (job_id, kind, text, at)"
            " SELECT j.id, CASE WHEN s.i = 9 THEN 'finish' ELSE 'stage' END,"
            " CASE WHEN s.i = 9 THEN 'ok' ELSE (%s::text[])[s.i] END, j.created_at"
            " FROM jobs j, generate_series(1, 9) s(i) ORDER BY j.created_at, s.i",
            (STAGES,),
        )
        conn.execute(
            "INSERT INTO jobs (id, conversation, requested_by, request, status)"
            " VALUES (%s, 'tg:1', 'tg:1', 'Create an agent Watched', 'running')",
            (WATCHED,),
        )
        conn.execute("ANALYZE")


def watch(url: str, cookies: httpx.Cookies, arrivals: dict[int, float], ready: threading.Event,
          stop: threading.Event) -> None:  # fmt: skip
    with (
        httpx.Client(base_url=url, cookies=cookies, timeout=30) as client,
        client.stream("GET", f"/console/jobs/{WATCHED}/events") as stream,
    ):
        event_id = None
        for line in stream.iter_lines():
            if line.startswith("event: pull"):
                ready.set()
            elif line.startswith("id: "):
                event_id = int(line[4:])
            elif line == "" and event_id is not None:
                arrivals[event_id] = time.perf_counter()
                event_id = None
            if stop.is_set():
                return


async def say_steps(database: str, events: int, interval: float) -> dict[int, float]:
    """Each step's seq and the moment its transaction committed (the writer returned)."""
    committed: dict[int, float] = {}
    async with AsyncConnectionPool(database, min_size=1, max_size=2, open=False,
                                   configure=_autocommit) as pool:  # fmt: skip
        progress = ChatProgress(pool, WATCHED, "tg:1", "Create an agent Watched")
        for n in range(events):
            await progress(f"{STAGES[n % len(STAGES)]} #{n}")
            done = time.perf_counter()
            async with pool.connection() as conn:
                cur = await conn.execute(
                    "SELECT max(seq) FROM job_events WHERE job_id = %s", (WATCHED,)
                )
                row = await cur.fetchone()
            assert row is not None
            committed[int(row[0])] = done
            await asyncio.sleep(interval)
    return committed


async def _autocommit(conn: Any) -> None:
    await conn.set_autocommit(True)


def page_times(url: str, cookies: httpx.Cookies, repeat: int) -> list[tuple[str, list[float]]]:
    with httpx.Client(base_url=url, cookies=cookies, timeout=30) as client:
        first = client.get("/console/jobs").text
        older = first.split('rel="next"')[0].rsplit('href="', 1)[1].split('"')[0]
        paths = [
            ("list, first page", "/console/jobs"),
            ("list, second page (keyset)", older.replace("&amp;", "&")),
            ("list, by status", "/console/jobs?status=failed"),
            ("list, by who asked", "/console/jobs?requested_by=tg:7"),
            ("list, both filters, none match", "/console/jobs?status=running&requested_by=x"),
            ("one job (finished, 8 steps)", "/console/jobs/b0000500"),
        ]
        timings = []
        for label, path in paths:
            assert client.get(path).status_code == 200, path
            spent = []
            for _ in range(repeat):
                started = time.perf_counter()
                answer = client.get(path)
                spent.append((time.perf_counter() - started) * 1e3)
                assert answer.status_code == 200
            timings.append((label, spent))
    return timings


def summary(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"median {statistics.median(ordered):.1f} ms, p95 {p95:.1f} ms, max {ordered[-1]:.1f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50)
    parser.add_argument("--watchers", type=int, default=10)
    parser.add_argument("--interval", type=float, default=0.1)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="console-sse-") as scratch:
        postgres = TestPostgres(Path(scratch) / "pg")
        try:
            database = postgres.fresh_database()
            seed(database, args.jobs)
            settings = make_settings(Path(scratch) / "home", database)
            with running_server(settings, database, worker=False) as (url, _runtime):
                login = httpx.get(f"{url}/console/login/{mint_link(database, 'tg:1', 'reader')}")
                cookies = login.cookies
                pages = page_times(url, cookies, args.repeat)
                arrivals: list[dict[int, float]] = [{} for _ in range(args.watchers)]
                readies = [threading.Event() for _ in range(args.watchers)]
                stop = threading.Event()
                threads = [
                    threading.Thread(
                        target=watch, args=(url, cookies, got, ready, stop), daemon=True
                    )
                    for got, ready in zip(arrivals, readies, strict=True)
                ]
                for thread in threads:
                    thread.start()
                for ready in readies:
                    assert ready.wait(30), "a watcher did not connect"
                committed = asyncio.run(say_steps(database, args.events, args.interval))
                time.sleep(1.0)
                stop.set()
                # A last step wakes every watcher, so each sees `stop` and leaves.
                asyncio.run(say_steps(database, 1, 0))
                for thread in threads:
                    thread.join(10)
        finally:
            postgres.stop()
    latencies = [(got[seq] - at) * 1e3 for got in arrivals for seq, at in committed.items()
                 if seq in got]  # fmt: skip
    missing = args.watchers * len(committed) - len(latencies)
    print(f"jobs: {args.jobs} (+1 watched); watchers: {args.watchers}; events: {args.events},"
          f" one every {args.interval * 1e3:.0f} ms")  # fmt: skip
    print(f"SSE latency, commit to arrival ({len(latencies)} deliveries, {missing} missing):"
          f" {summary(latencies)}")  # fmt: skip
    for label, spent in pages:
        print(f"{label}: {summary(spent)}")
    return 0 if missing == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
