"""Retention under a steady load: does the database stop growing once the window is full?

    .venv/bin/python bench/retention.py [--days 21] [--deliveries 20000] [--messages 1000]
    .venv/bin/python bench/retention.py --calibrate 200   # one chat message, measured

Each simulated day stores `--deliveries` GitHub deliveries (the published octokit example
payloads, a CI-heavy mix) and `--messages` chat messages (a Telegram update in the inbox,
and the LangGraph checkpoints one message through the real graph writes: 4 checkpoints,
7 blobs, 12 writes of the measured sizes, over 100 chats), each with its queue job run to
`succeeded` (procrastinate's own defer; its triggers write the events). Then it runs
`app.retention.run` with the default windows, VACUUMs (what autovacuum does) and reads
`pg_database_size`.

Days are simulated without waiting: day d's rows are dated (days - d) days back, and each
run's windows are widened by the days still to come, so that every row is exactly as old
to the prune as it would be on that day. Nothing in `app/` knows it is being simulated.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app import retention  # noqa: E402
from app.worker.queue import DeliveryQueue  # noqa: E402
from tests.support.postgres import TestPostgres  # noqa: E402
from tests.support.webhooks import examples  # noqa: E402

# What a busy installation receives: mostly CI chatter, some pull requests and comments.
MIX = [("check_run", 6), ("workflow_job", 6), ("status", 3), ("check_suite", 2), ("push", 2),
       ("issue_comment", 1), ("pull_request", 1)]  # fmt: skip
CHATS = 100
# One chat message through the real graph (measured: 19.0 KB over the three tables):
BLOBS = [("history", 1, 930), ("history", 3, 933), ("outbound", 1, 1040), ("outbound", 2, 61),
         ("outbound", 3, 1040), ("inbound", 0, 152), ("__start__", 0, 171)]  # fmt: skip
WRITES = [1040, 1043, 103, 61, 2, 2, 6, 1, 1, 152, 1, 2]  # by checkpoint 3, 3, 3, 3 (i // 3)
CHANNELS = ("mode", "target", "target_text", "graph_version", "branch:to:route")
SETTLED = f"{1:032}.0.5"  # the version of the channels set once (by /echo) and kept


def github_payloads() -> list[tuple[str, str]]:
    found = examples()
    mix = []
    for event, weight in MIX:
        mix += [(event, json.dumps(p)) for p in found[event]] * weight
    return mix


def telegram_update(n: int) -> str:
    return json.dumps({
        "update_id": n, "message": {
            "message_id": n, "date": 1_765_000_000 + n, "text": f"message {n} " + "x" * 60,
            "chat": {"id": n % CHATS, "type": "private", "first_name": "Ada"},
            "from": {"id": n % CHATS, "is_bot": False, "first_name": "Ada",
                     "language_code": "en"},
        },
    })  # fmt: skip


def version(n: int) -> str:
    return f"{n:032}.0.{random.random()}"


def checkpoint_body(ident: str, versions: dict[str, str]) -> str:
    return json.dumps({
        "v": 4, "id": ident, "ts": datetime.now(UTC).isoformat(),
        "channel_versions": versions,
        "versions_seen": {node: {c: versions[c] for c in list(versions)[:4]}
                          for node in ("__input__", "__start__", "route", "respond")},
        "channel_values": {"mode": "echo", "target": "echo", "target_text": "message",
                           "graph_version": "3"},
        "updated_channels": ["history", "outbound"],
    })  # fmt: skip


class Load:
    def __init__(self, conninfo: str, deliveries: int, messages: int) -> None:
        self.conninfo = conninfo
        self.deliveries = deliveries
        self.messages = messages
        self.payloads = github_payloads()
        self.ids = itertools.count(1)
        self.counters = dict.fromkeys(range(CHATS), 8)  # per thread: the version count
        self.seq = itertools.count(1)

    def seed(self, conn: psycopg.Connection[Any]) -> None:
        """Each chat's thread starts with its `mode` blob (version 1), as /echo left it."""
        with conn.cursor().copy(
            "COPY checkpoint_blobs (thread_id, checkpoint_ns, channel, version, type, blob)"
            " FROM STDIN"
        ) as copy:
            for chat in range(CHATS):
                for channel in CHANNELS:
                    copy.write_row((f"tg:{chat}", "", channel, SETTLED, "msgpack", b"\x01"))

    async def day(self, pool: AsyncConnectionPool, queue: DeliveryQueue, start: datetime) -> None:
        step = timedelta(days=1) / (self.deliveries + self.messages)
        rows = []
        for n in range(self.deliveries):
            event, body = random.choice(self.payloads)
            rows.append(("github", str(uuid.uuid4()), event, body, start + n * step))
        for n in range(self.messages):
            update = next(self.ids)
            at = start + (self.deliveries + n) * step
            rows.append(("telegram", f"tg-{update}", "message", telegram_update(update), at))
        async with pool.connection() as conn:
            async with conn.cursor().copy(
                "COPY inbox (source, delivery_id, event, payload, status, received_at,"
                " processed_at, processed_by, handled_count, attempts) FROM STDIN"
            ) as copy:
                for source, delivery, event, body, at in rows:
                    await copy.write_row(
                        (source, delivery, event, body, "processed", at, at, "bench", 1, 1)
                    )
            cur = await conn.execute(
                "SELECT id FROM inbox WHERE received_at >= %s ORDER BY id", (start,)
            )
            inbox_ids = [r[0] for r in await cur.fetchall()]
            for chunk in range(0, len(inbox_ids), 2000):
                async with conn.transaction():
                    part = inbox_ids[chunk : chunk + 2000]
                    await queue.enqueue_many(conn, [(i, None) for i in part])
            # The worker's part: taken, then done; procrastinate's triggers log each step.
            await conn.execute(
                "UPDATE procrastinate_jobs SET status = 'doing' WHERE status = 'todo'"
            )
            await conn.execute(
                "UPDATE procrastinate_jobs SET status = 'succeeded' WHERE status = 'doing'"
            )
            await conn.execute(
                "UPDATE procrastinate_events e SET at = i.received_at FROM procrastinate_jobs j,"
                " inbox i WHERE e.job_id = j.id AND i.id = (j.args->>'inbox_id')::bigint"
                " AND i.received_at >= %s",
                (start,),
            )
        await self.chat(pool)

    async def chat(self, pool: AsyncConnectionPool) -> None:
        async with pool.connection() as conn:
            async with conn.cursor().copy(
                "COPY checkpoints (thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id,"
                " type, checkpoint, metadata) FROM STDIN"
            ) as checkpoints:
                writes: list[tuple[Any, ...]] = []
                blobs: list[tuple[Any, ...]] = []
                for n in range(self.messages):
                    chat = n % CHATS
                    thread, c = f"tg:{chat}", self.counters[chat]
                    self.counters[chat] += 4
                    ids = [f"{next(self.seq):016x}-bench" for _ in range(4)]
                    for i, ident in enumerate(ids):
                        versions = dict.fromkeys(CHANNELS, SETTLED)
                        versions |= {"history": version(c + i), "outbound": version(c + i),
                                     "inbound": version(c), "__start__": version(c)}  # fmt: skip
                        meta = json.dumps({"source": "loop", "step": i, "graph_version": "3"})
                        parent = ids[i - 1] if i else None
                        await checkpoints.write_row(
                            (thread, "", ident, parent, None, checkpoint_body(ident, versions),
                             meta)
                        )  # fmt: skip
                    for channel, offset, size in BLOBS:
                        blobs.append((thread, "", channel, version(c + offset), "msgpack",
                                      os.urandom(size // 2).hex().encode()[:size]))  # fmt: skip
                    for w, size in enumerate(WRITES):
                        writes.append((thread, "", ids[w // 3], f"task-{n}-{w // 3}", w % 3,
                                       "history", "msgpack", os.urandom(size)))  # fmt: skip
            async with conn.cursor().copy(
                "COPY checkpoint_blobs (thread_id, checkpoint_ns, channel, version, type, blob)"
                " FROM STDIN"
            ) as copy:
                for row in blobs:
                    await copy.write_row(row)
            async with conn.cursor().copy(
                "COPY checkpoint_writes (thread_id, checkpoint_ns, checkpoint_id, task_id, idx,"
                " channel, type, blob) FROM STDIN"
            ) as copy:
                for row in writes:
                    await copy.write_row(row)


def size_of(conninfo: str, vacuum: bool) -> tuple[int, dict[str, int]]:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        if vacuum:
            conn.execute("VACUUM")
        total = conn.execute("SELECT pg_database_size(current_database())").fetchone()
        relations = conn.execute(
            "SELECT relname, pg_relation_size(oid) FROM pg_class WHERE relkind IN ('r', 'i', 't')"
            " AND relnamespace IN ('public'::regnamespace, 'pg_toast'::regnamespace)"
        ).fetchall()
    return int(total[0]) if total else 0, {name: int(size) for name, size in relations}


def mb(n: float) -> str:
    return f"{n / 1e6:,.0f} MB"


async def simulate(conninfo: str, args: argparse.Namespace) -> None:
    from langgraph.checkpoint.postgres import PostgresSaver

    with PostgresSaver.from_conn_string(conninfo) as saver:  # LangGraph's own tables
        saver.setup()
    load = Load(conninfo, args.deliveries, args.messages)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        load.seed(conn)
    pool = AsyncConnectionPool(conninfo, min_size=1, max_size=4, open=False,
                               kwargs={"autocommit": True})  # fmt: skip
    await pool.open(wait=True)
    queue = DeliveryQueue(max_attempts=1, retry_base_seconds=0)
    await queue.open(pool)
    home = Path(tempfile.mkdtemp(prefix="persais-bench-retention"))
    place = retention.Place(home, home / "agents")
    base = retention.Policy()
    now = datetime.now(UTC)
    previous = 0
    full: dict[str, int] = {}
    print(f"{'day':>4} {'stored':>9} {'grew':>9} {'before prune':>13} {'after prune':>12}"
          f" {'prune s':>8}  removed")  # fmt: skip
    for day in range(args.days):
        ahead = args.days - day - 1  # days still to come: how much further back rows are
        started = time.monotonic()
        await load.day(pool, queue, now - timedelta(days=ahead + 1))
        stored = time.monotonic() - started
        before, _ = size_of(conninfo, vacuum=False)
        policy = retention.Policy(
            inbox_days=base.inbox_days + ahead, jobs_days=base.jobs_days + ahead,
            outbox_days=base.outbox_days + ahead, approvals_days=base.approvals_days + ahead,
        )  # fmt: skip
        outcomes = await retention.run(pool, policy, place, job_manager=queue.app.job_manager)
        pruned = sum(o.seconds for o in outcomes)
        after, tables = size_of(conninfo, vacuum=True)
        removed = ", ".join(f"{o.step} {o.removed}" for o in outcomes if o.removed or o.error)
        print(f"{day + 1:>4} {stored:>8.0f}s {mb(after - previous):>9} {mb(before):>13}"
              f" {mb(after):>12} {pruned:>8.1f}  {removed}", flush=True)  # fmt: skip
        previous = after
        if day + 1 == int(base.inbox_days) + 2:  # the window full, and one prune past it
            full = tables
    largest = sorted(tables.items(), key=lambda kv: -kv[1])[:6]
    print("largest relations at the end:", ", ".join(f"{k} {mb(v)}" for k, v in largest))
    if args.days > base.inbox_days + 2:
        grew = sorted(((v - full.get(k, 0), k) for k, v in tables.items()), reverse=True)[:4]
        print(f"grew since day {int(base.inbox_days) + 2}:", ", ".join(
            f"{k} {n / 1e3:+,.0f} kB" for n, k in grew))  # fmt: skip
    await queue.close()
    await pool.close()


CHECKPOINT_TABLES = ("checkpoints", "checkpoint_blobs", "checkpoint_writes")


async def calibrate(conninfo: str, messages: int) -> None:
    """What one chat message costs through the real graph (the shape `Load.chat` copies)."""
    from tests.support.agents import write_agent
    from tests.support.config import make_settings
    from tests.support.conversation import conversations, say

    work = Path(tempfile.mkdtemp(prefix="persais-bench-calibrate"))
    write_agent(work / "agents", "echo")
    settings = make_settings(work / "home", conninfo, PERSAIS_AGENTS_DIR=str(work / "agents"))

    def measure() -> tuple[int, list[int]]:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute("VACUUM")
            size = conn.execute(
                "SELECT sum(pg_total_relation_size(t::regclass)) FROM unnest(%s::text[]) t",
                (list(CHECKPOINT_TABLES),),
            ).fetchone()
            rows = [conn.execute(f"SELECT count(*) FROM {t}").fetchone() for t in CHECKPOINT_TABLES]  # noqa: S608
        return int(size[0]) if size else 0, [int(r[0]) if r else 0 for r in rows]

    async with conversations(settings, conninfo) as convo:
        for chat in range(10):
            await say(convo, "/echo", user=f"cli:u{chat}")
        size, rows = measure()
        for n in range(messages):
            await say(convo, f"message {n}: " + "x" * 60, user=f"cli:u{n % 10}")
        size2, rows2 = measure()
    per = [(b - a) / messages for a, b in zip(rows, rows2, strict=True)]
    print(f"one chat message through the real graph: {(size2 - size) / messages / 1e3:.1f} kB;"
          f" rows per message (checkpoints, blobs, writes): {per}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=21)
    parser.add_argument("--deliveries", type=int, default=20_000)
    parser.add_argument("--messages", type=int, default=1_000)
    parser.add_argument(
        "--calibrate",
        type=int,
        default=0,
        metavar="N",
        help="only send N messages through the real graph and measure them",
    )
    args = parser.parse_args()
    random.seed(17)
    work = Path(tempfile.mkdtemp(prefix="persais-bench-retention-pg"))
    pg = TestPostgres(work)
    try:
        if args.calibrate:
            asyncio.run(calibrate(pg.fresh_database(), args.calibrate))
        else:
            asyncio.run(simulate(pg.fresh_database(), args))
    finally:
        pg.stop()


if __name__ == "__main__":
    main()
