"""Console page times at size: every page of the console, through a real server, on a
database holding 1,000 Mechanic jobs and 10,000 audit rows.

    .venv/bin/python bench/console_pages.py [--runs 20] [--jobs 1000] [--audit 10000]

A fresh embedded Postgres is migrated and seeded with COPY: `--jobs` jobs (each with its
progress lines in `job_events`, a pull request on the local forge for those that opened
one, a `[Deploy]` question for those still open), `--audit` audit rows, 30 releases with
their events, 5,000 inbox deliveries (some dead), 60 lessons. One pull request is real: a
branch of the local forge's bare repository with the Echo agent's three files, so its page
renders a real diff. The server is the real app (`create_app`, web and worker in one
process, as `persais serve` runs) under uvicorn on loopback; the bench logs in through a
one-time link and then asks for each page `--runs` times after 3 warm-ups, one request at
a time.

Two times per page: the whole request as the client sees it (connection kept alive), and
what the page says it spent in its `server-timing` header (the render, and whatever else a
page reports). Target: ≤ 100 ms each.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.forge.local import LocalForge  # noqa: E402
from app.settings import CHECKOUT_ROOT, load_settings  # noqa: E402
from tests.support.console import mint_link  # noqa: E402
from tests.support.local_pulls import open_pull  # noqa: E402
from tests.support.pools import open_pool  # noqa: E402
from tests.support.postgres import TestPostgres  # noqa: E402
from tests.support.server import running_server  # noqa: E402

TARGET_MS = 100.0
WARM_UPS = 3
NOW = datetime.now(UTC)
PEOPLE = ["telegram:42", "telegram:43", "telegram:44", "github:ada", "github:ben", "cli:ada"]
STATUSES = ["opened", "deployed", "failed", "aborted", "refused", "opened", "deployed"]
STAGES = ["plan", "scaffold", "aider (round 1)", "validate (round 1/3)", "pull request"]
ACTIONS = [
    "mechanic.opened", "mechanic.failed", "mechanic.aborted", "deploy.merged", "release.live",
    "release.rolled_back", "approval.decided", "review.posted", "agent.quarantined",
    "console.login", "console.logout", "inbox.replayed", "lesson.added", "lesson.retired",
]  # fmt: skip
ECHO = {
    "dynamic/agents/echo/agent.py": (
        "from app.agents.base import Agent, AgentContext, Message, Reply\n\n\n"
        "class Echo(Agent):\n"
        "    async def handle(self, message: Message, ctx: AgentContext) -> Reply | str:\n"
        '        return f"Echo: {message.text}"\n'
    ),
    "dynamic/agents/echo/agent.toml": (
        'name = "echo"\ncommand = "echo"\ndescription = "Repeats your messages"\n'
        'version = "0.1.0"\n'
    ),
    "tests/dynamic/test_echo.py": "def test_echo() -> None:\n    assert True\n",
}


def job_id(n: int) -> str:
    """8 hex digits, as the Mechanic's ids look (an odd multiplier: no two alike)."""
    return f"{(n * 2654435761) % 2**32:08x}"


def ago(rng: random.Random, days: float) -> datetime:
    return NOW - timedelta(seconds=rng.uniform(0, days * 86400))


def copy(
    conn: psycopg.Connection[Any], table: str, columns: list[str], rows: Iterator[tuple[Any, ...]]
) -> int:
    count = 0
    with conn.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as out:
        for row in rows:
            out.write_row(row)
            count += 1
    return count


def seed(conninfo: str, jobs: int, audits: int, pull: tuple[int, str, str]) -> dict[str, Any]:
    """Fill the tables the console reads; how many rows each got, and a job to look at."""
    rng = random.Random(19)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        rows, made = seed_jobs(conn, rng, jobs, pull)
        made["releases"] = seed_releases(conn, rows, pull[2])
        made["inbox"] = copy(conn, "inbox", [
            "source", "delivery_id", "event", "payload", "status", "attempts", "last_error",
            "received_at", "processed_at"], inbox_rows(rng, 5000))  # fmt: skip
        made["audit"] = copy(conn, "audit_log", ["at", "actor", "action", "subject", "detail"], (
            (ago(rng, 90), PEOPLE[i % len(PEOPLE)], ACTIONS[i % len(ACTIONS)],
             f"job:{job_id(1 + i % jobs)}", json.dumps({"n": i, "via": "chat"}))
            for i in range(audits)))  # fmt: skip
        made["lessons"] = copy(conn, "lessons", [
            "repository", "text", "paths", "source", "created_by", "created_at"], (
            ("persais", f"Lesson {i}: keep agents' answers short.", "{dynamic/agents}",
             "command", PEOPLE[i % 3], ago(rng, 60)) for i in range(60)))  # fmt: skip
        conn.execute("ANALYZE")
    return made


def seed_jobs(
    conn: psycopg.Connection[Any], rng: random.Random, jobs: int, pull: tuple[int, str, str]
) -> tuple[list[tuple[Any, ...]], dict[str, Any]]:
    """Jobs with their progress lines, their pull requests (all on the real branch), and the
    [Deploy] questions of those still open."""
    number, branch, head = pull
    rows = []
    pr = number
    for n in range(1, jobs + 1):
        status = STATUSES[n % len(STATUSES)]
        asker = PEOPLE[n % 3]
        created = ago(rng, 120)
        has_pull = status in ("opened", "deployed")
        if has_pull:
            pr += 1
        plan = {"kind": "agent", "name": f"agent{n}", "command": f"a{n}",
                "description": f"Agent number {n}", "question": None,
                "behaviour": [{"say": "hi", "expect": "hello"}]}  # fmt: skip
        rows.append((
            job_id(n), asker, asker, f"Create an agent number {n} that answers hello",
            status, json.dumps(plan), f"mechanic/agent{n}-{job_id(n)}",
            pr if has_pull else None, 1 + n % 3, round(rng.uniform(0.01, 0.5), 4),
            None if has_pull else f"job {status} at validate", "pull request",
            f"/console/pulls/{pr}" if has_pull else None, created, created,
        ))  # fmt: skip
    made: dict[str, Any] = {"job": rows[-1][0]}  # the last made; any job will do
    made["jobs"] = copy(conn, "jobs", [
        "id", "conversation", "requested_by", "request", "status", "plan", "branch",
        "pr_number", "rounds", "cost", "message", "stage", "pr_url", "created_at",
        "updated_at"], iter(rows))  # fmt: skip

    def events() -> Iterator[tuple[Any, ...]]:
        for row in rows:
            at = row[13]
            yield (row[0], at, "queued", "queued")
            for i, stage in enumerate(STAGES):
                yield (row[0], at + timedelta(seconds=5 * i + 1), "stage", stage)
            yield (row[0], at + timedelta(seconds=40), "finish",
                   "ok" if row[7] is not None else "failed")  # fmt: skip

    made["job_events"] = copy(conn, "job_events", ["job_id", "at", "kind", "text"], events())
    pulls = [(row[7], "persais", row[0], branch, "main", head, row[3], f"Job {row[0]}.",
              "merged" if row[4] == "deployed" else "open", row[13], row[13])
             for row in rows if row[7] is not None]  # fmt: skip
    made["pull_requests"] = copy(conn, "pull_requests", [
        "number", "repository", "job_id", "branch", "base", "head_sha", "title", "body",
        "state", "created_at", "updated_at"], iter(pulls))  # fmt: skip
    conn.execute(
        "SELECT setval('pull_requests_number_seq', (SELECT max(number) FROM pull_requests))"
    )
    made["questions"] = copy(conn, "approvals", [
        "id", "conversation", "agent", "question", "prompt", "choices", "requested_by",
        "expires_at", "created_at"], (
        (f"q{row[0]}", row[1], "mechanic", f"pr:{row[0]}",
         f"✅ Pull request #{row[7]} is open", json.dumps(
             [["deploy", "Deploy"], ["abort", "Abort"], ["view", "View PR", row[12]]]),
         row[2], NOW + timedelta(days=7), row[13])
        for row in rows if row[4] == "opened"))  # fmt: skip
    return rows, made


def seed_releases(conn: psycopg.Connection[Any], rows: list[tuple[Any, ...]], head: str) -> int:
    deployed = [row for row in rows if row[4] == "deployed"][:29]
    conn.execute("INSERT INTO releases (sha, source, repository, pressed_by, grants, created_at)"
                 " VALUES (NULL, 'image', 'persais', 'persais', '{}', %s)",
                 (NOW - timedelta(days=121),))  # fmt: skip
    conn.execute("INSERT INTO release_events (release, status, actor, at) VALUES (1, 'live',"
                 " 'persais', %s)", (NOW - timedelta(days=121),))  # fmt: skip
    at = NOW - timedelta(days=100)
    for i, row in enumerate(deployed, start=2):
        at += timedelta(days=3)
        # The release in service is the real branch's head: the worker loads its agents.
        sha = head if i == len(deployed) + 1 else f"{i:02x}" + head[2:]
        conn.execute(
            "INSERT INTO releases (sha, source, repository, pr_number, job_id, pressed_by,"
            " conversation, previous, grants, created_at) VALUES (%s, 'merge', 'persais', %s,"
            " %s, %s, %s, %s, %s, %s)",
            (sha, row[7], row[0], row[2], row[1], i - 1,
             json.dumps({row[0]: {"http": {"hosts": ["api.example.com"]}}} if i % 5 == 0
                        else {}), at),
        )  # fmt: skip
        event = "INSERT INTO release_events (release, status, actor, at) VALUES (%s, %s, %s, %s)"
        for step, status in enumerate(("cut", "loading", "live")):
            conn.execute(event, (i, status, row[2], at + timedelta(seconds=step)))
        conn.execute(event, (i - 1, "superseded", row[2], at + timedelta(seconds=3)))
    return len(deployed) + 1


def inbox_rows(rng: random.Random, count: int) -> Iterator[tuple[Any, ...]]:
    for n in range(count):
        status = "dead" if n % 97 == 0 else "ignored" if n % 11 == 0 else "processed"
        received = ago(rng, 30)
        message = {"message_id": n, "text": f"/echo message {n}", "from": {"id": 42},
                   "chat": {"id": 42, "type": "private"}}  # fmt: skip
        update = {"update_id": n, "message": message}
        yield (
            "telegram", str(n), "message", json.dumps(update), status,
            3 if status == "dead" else 1,
            "RuntimeError: the agent did not answer" if status == "dead" else None,
            received, None if status == "dead" else received + timedelta(milliseconds=30),
        )  # fmt: skip


async def real_pull(settings: Any, conninfo: str, scratch: Path) -> tuple[int, str, str]:
    """Pull request #1: the Echo agent's files on a branch of the local forge."""
    async with open_pool(conninfo) as pool:
        forge = LocalForge(pool, settings.home, CHECKOUT_ROOT)
        number, head = await open_pull(
            forge, scratch, "mechanic/echo-bench", ECHO, title="Echo: repeats your messages"
        )
    return number, "mechanic/echo-bench", head


def server_timing(header: str) -> dict[str, float]:
    """`render;dur=1.2, db;dur=3.4` -> {"render": 1.2, "db": 3.4}."""
    found = {}
    for entry in header.split(","):
        name, *params = [p.strip() for p in entry.split(";")]
        for param in params:
            if param.startswith("dur="):
                found[name] = float(param[4:])
    return found


def measure(client: httpx.Client, path: str, runs: int) -> dict[str, Any]:
    totals: list[float] = []
    parts: dict[str, list[float]] = {}
    status = 0
    for i in range(WARM_UPS + runs):
        started = time.perf_counter()
        answer = client.get(path)
        took = (time.perf_counter() - started) * 1e3
        status = answer.status_code
        if i < WARM_UPS:
            continue
        totals.append(took)
        for name, value in server_timing(answer.headers.get("server-timing", "")).items():
            parts.setdefault(name, []).append(value)
    return {"status": status, "total": totals, "parts": parts, "bytes": len(answer.content)}


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def quiet(client: httpx.Client, conninfo: str, timeout: float = 120) -> None:
    """Wait until the worker has nothing to do (the start's index job), so it does not
    share the cores with the pages being timed."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(conninfo, autocommit=True) as conn:
        while time.monotonic() < deadline:
            (busy,) = conn.execute(
                "SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')"
            ).fetchone() or (0,)
            if busy == 0 and client.get("/ready").status_code == 200:
                return
            time.sleep(0.5)


def pages(made: dict[str, Any], pull: int) -> list[tuple[str, str]]:
    job = made["job"]
    month_ago = (NOW - timedelta(days=30)).date()
    return [
        ("overview", "/console/"),
        ("questions", "/console/questions"),
        ("jobs", "/console/jobs"),
        ("jobs, failed only", "/console/jobs?status=failed"),
        ("a job", f"/console/jobs/{job}"),
        ("pull requests", "/console/pulls"),
        ("a pull request (real diff)", f"/console/pulls/{pull}"),
        ("releases", "/console/releases"),
        ("agents", "/console/agents"),
        ("inbox", "/console/inbox"),
        ("inbox, dead only", "/console/inbox?status=dead"),
        ("audit log", "/console/audit"),
        ("audit log, by person", "/console/audit?actor=github:ada"),
        ("audit log, action prefix", "/console/audit?action=release."),
        (
            "audit log, person + action + time",
            f"/console/audit?actor=github:ada"
            f"&action=deploy.merged&from={month_ago}T00:00&to={NOW.date()}",
        ),
        ("memory", "/console/memory"),
    ]


def report(results: list[tuple[str, str, dict[str, Any]]]) -> None:
    names = sorted({k for _, _, r in results for k in r["parts"]})
    head = ["page", "status", "request p50 / p95 ms", *[f"{n} p50 / p95 ms" for n in names],
            "KB", "≤ 100 ms"]  # fmt: skip
    print("| " + " | ".join(head) + " |")
    print("|" + " --- |" * len(head))
    for label, path, r in results:
        cells = [f"{label} (`{path}`)", str(r["status"]),
                 f"{statistics.median(r['total']):.1f} / {p95(r['total']):.1f}"]  # fmt: skip
        for name in names:
            got = r["parts"].get(name)
            cells.append(f"{statistics.median(got):.1f} / {p95(got):.1f}" if got else "—")
        cells.append(f"{r['bytes'] / 1024:.1f}")
        cells.append("✅" if r["status"] == 200 and p95(r["total"]) <= TARGET_MS else "❌")
        print("| " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--audit", type=int, default=10000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="persais-console-bench-") as scratch:
        base = Path(scratch)
        postgres = TestPostgres(base / "pg")
        try:
            conninfo = postgres.fresh_database()
            settings = load_settings(None, PERSAIS_HOME=str(base / "home"), DATABASE_URL=conninfo)
            number, branch, head = asyncio.run(real_pull(settings, conninfo, base / "work"))
            started = time.perf_counter()
            made = seed(conninfo, args.jobs, args.audit, (number, branch, head))
            seconds = time.perf_counter() - started
            print(f"seeded in {seconds:.1f} s: " + ", ".join(
                f"{k} {v}" for k, v in made.items() if isinstance(v, int)), flush=True)  # fmt: skip
            token = mint_link(conninfo)
            with running_server(settings, conninfo, worker=True) as (url, _runtime), \
                    httpx.Client(base_url=url, timeout=30) as client:  # fmt: skip
                quiet(client, conninfo)
                assert client.get(f"/console/login/{token}").status_code == 303
                results = [(label, path, measure(client, path, args.runs))
                           for label, path in pages(made, number)]  # fmt: skip
        finally:
            postgres.stop()
    print(f"\n{args.runs} requests a page after {WARM_UPS} warm-ups; {args.jobs} jobs,"
          f" {args.audit} audit rows\n")  # fmt: skip
    report(results)


if __name__ == "__main__":
    main()
