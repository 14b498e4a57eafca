"""Retention: old rows go and new ones stay, checkpoints shrink and threads still resume,
release folders keep the live release, its rollback target and the last N, one failing
step leaves the others running, and one worker per tick runs the periodic task."""

from __future__ import annotations

import asyncio
import os
import re
import time
from pathlib import Path
from typing import Any

import pytest

from app import retention
from app.deploy import files, ledger
from app.runtime import Runtime
from app.settings import SettingsError
from app.web.metrics import Metrics
from app.worker.queue import QUEUE, RETENTION_TASK, DeliveryQueue
from tests.support.agents import write_agent
from tests.support.config import make_settings
from tests.support.conversation import ASKER, conversations, say, say_in_a_new_process
from tests.support.pools import open_pool


def place(tmp_path: Path) -> retention.Place:
    return retention.Place(home=tmp_path / "home", image_agents=tmp_path / "image-agents")


def run(database: str, tmp_path: Path, **kw: Any) -> dict[str, retention.Outcome]:
    policy = retention.Policy(batch=kw.pop("batch", 2), **kw.pop("policy", {}))
    where = kw.pop("place", place(tmp_path))

    async def go() -> list[retention.Outcome]:
        async with open_pool(database) as pool:
            queue = DeliveryQueue(max_attempts=1, retry_base_seconds=0)
            await queue.open(pool)
            try:
                return await retention.run(
                    pool, policy, where, job_manager=queue.app.job_manager, **kw
                )
            finally:
                await queue.close()

    return {o.step: o for o in asyncio.run(go())}


def delivery(sql, delivery_id: str, status: str, days_ago: float) -> None:
    sql(
        "INSERT INTO inbox (source, delivery_id, event, payload, status, received_at,"
        " processed_at) VALUES ('github', %s, 'push', '{\"a\": 1}', %s,"
        " now() - %s * interval '1 day', CASE WHEN %s IN ('processed', 'ignored')"
        " THEN now() - %s * interval '1 day' END)",
        delivery_id, status, days_ago, status, days_ago,
    )  # fmt: skip


def approval(sql, ident: str, status: str, days_ago: float, *, delivered: bool = True) -> None:
    sql(
        "INSERT INTO approvals (id, conversation, agent, question, prompt, choices,"
        " requested_by, status, decided_at, delivered_at, expires_at) VALUES (%s, 'cli:ada',"
        " 'asker', 'q', 'Ship?', '[]', 'cli:ada', %s,"
        " CASE WHEN %s = 'decided' THEN now() - %s * interval '1 day' END,"
        " CASE WHEN %s THEN now() END, now() - %s * interval '1 day')",
        ident, status, status, days_ago, delivered, days_ago,
    )  # fmt: skip


def test_rows_older_than_their_window_go_and_newer_ones_stay(
    database: str, sql, tmp_path: Path
) -> None:
    for name, status, days in [
        ("old", "processed", 15), ("old-ignored", "ignored", 20), ("new", "processed", 13),
        ("old-dead", "dead", 40), ("old-open", "received", 40),
        *((f"bulk{i}", "processed", 30) for i in range(5)),
    ]:  # fmt: skip
        delivery(sql, name, status, days)
    approval(sql, "a-old", "decided", 31)
    approval(sql, "a-expired", "expired", 31)
    approval(sql, "a-new", "decided", 29)
    approval(sql, "a-undelivered", "decided", 31, delivered=False)
    approval(sql, "a-named", "expired", 31)  # an unshown message still names it
    sql(
        "INSERT INTO outbox (conversation, text, approval, version, delivered_version,"
        " updated_at) VALUES ('tg:1', 'shown long ago', NULL, 2, 2, now() - interval '8 days'),"
        " ('tg:1', 'shown lately', NULL, 1, 1, now() - interval '6 days'),"
        " ('tg:1', 'edited, not shown', 'a-named', 3, 2, now() - interval '9 days')"
    )
    sql(
        "INSERT INTO refusals (who, since, refused) VALUES"
        " ('tg:1', now() - interval '2 days', 1),"  # window over, nothing to carry: goes
        " ('tg:2', now() - interval '2 days', 7),"  # window over, a count to report: stays
        " ('tg:3', now() - interval '40 days', 7),"  # and 30 days after: goes
        " ('tg:4', now() - interval '1 hour', 1)"  # within its window: stays
    )

    dry = run(database, tmp_path, dry_run=True)
    assert (dry["inbox"].removed, dry["outbox"].removed) == (7, 1)
    assert (dry["approvals"].removed, dry["refusals"].removed) == (2, 2)
    assert sql("SELECT count(*) FROM inbox") == [(10,)]  # a dry run removes nothing

    done = run(database, tmp_path)
    assert all(o.error is None for o in done.values()), done
    assert {k: o.removed for k, o in done.items() if k != "queue jobs"} == {
        "inbox": 7, "outbox": 1, "approvals": 2, "refusals": 2, "checkpoints": 0,
        "agent state": 0, "release folders": 0,
    }  # fmt: skip
    assert sorted(r[0] for r in sql("SELECT delivery_id FROM inbox")) == [
        "new", "old-dead", "old-open"
    ]  # fmt: skip
    assert sorted(r[0] for r in sql("SELECT text FROM outbox")) == [
        "edited, not shown", "shown lately"
    ]  # fmt: skip
    assert sorted(r[0] for r in sql("SELECT id FROM approvals")) == [
        "a-named", "a-new", "a-undelivered"
    ]  # fmt: skip
    assert sorted(r[0] for r in sql("SELECT who FROM refusals")) == ["tg:2", "tg:4"]
    # A delivery id still within its window is still a duplicate.
    assert (
        sql(
            "INSERT INTO inbox (source, delivery_id, event, payload) VALUES"
            " ('github', 'new', 'push', '{}') ON CONFLICT DO NOTHING RETURNING id"
        )
        == []
    )


def test_finished_queue_jobs_older_than_the_window_go_with_their_events(
    database: str, sql, tmp_path: Path
) -> None:
    async def enqueue() -> None:
        async with open_pool(database) as pool:
            queue = DeliveryQueue(max_attempts=1, retry_base_seconds=0)
            await queue.open(pool)
            async with pool.connection() as conn:
                await queue.enqueue_many(conn, [(n, None) for n in range(1, 6)])
            await queue.close()

    asyncio.run(enqueue())
    ids = [r[0] for r in sql("SELECT id FROM procrastinate_jobs ORDER BY id")]
    sql("UPDATE procrastinate_jobs SET status = 'doing' WHERE id = ANY(%s)", ids[:4])
    sql("UPDATE procrastinate_jobs SET status = 'succeeded' WHERE id = ANY(%s)", ids[:2])
    sql("UPDATE procrastinate_jobs SET status = 'failed' WHERE id = %s", ids[2])
    old = [*ids[:3], ids[4]]  # two succeeded, one failed, one still waiting: all old
    sql(
        "UPDATE procrastinate_events SET at = now() - interval '8 days' WHERE job_id = ANY(%s)", old
    )
    # The periodic task's last defer names its job: the delete lets go of it, not refused.
    sql(
        "INSERT INTO procrastinate_periodic_defers (task_name, periodic_id, defer_timestamp,"
        " job_id) VALUES (%s, 'retention', 1, %s)",
        RETENTION_TASK, ids[0],
    )  # fmt: skip

    assert run(database, tmp_path, dry_run=True)["queue jobs"].removed == 3
    assert run(database, tmp_path)["queue jobs"].removed == 3
    assert [r[0] for r in sql("SELECT id FROM procrastinate_jobs ORDER BY id")] == ids[3:]
    assert sql("SELECT job_id FROM procrastinate_periodic_defers") == [(None,)]
    assert sql("SELECT count(*) FROM procrastinate_events WHERE job_id = ANY(%s)", old[:3]) == [
        (0,)
    ]


def agent_settings(tmp_path: Path, database: str) -> Any:
    agents = tmp_path / "agents"
    write_agent(agents, "echo")
    write_agent(agents, "asker", ASKER)
    return make_settings(tmp_path / "home", database, PERSAIS_AGENTS_DIR=str(agents))


async def graph_states(settings: Any, database: str, threads: list[str]) -> dict[str, Any]:
    """Each thread as LangGraph reads it back: its values, next nodes and interrupts."""
    async with conversations(settings, database) as convo:
        found = {}
        for thread in threads:
            graph = convo.orchestrator.graphs[thread.startswith("approval:")]
            state = await graph.aget_state({"configurable": {"thread_id": thread}})
            asked = [i.value for task in state.tasks for i in task.interrupts]
            found[thread] = (state.values, state.next, asked)
        return found


def per_thread(sql) -> dict[tuple[str, str], int]:
    rows = sql("SELECT thread_id, checkpoint_ns, count(*) FROM checkpoints GROUP BY 1, 2")
    return {(t, ns): n for t, ns, n in rows}


def test_checkpoints_keep_what_a_thread_needs_and_conversations_resume(
    tmp_path: Path, database: str, sql
) -> None:
    settings = agent_settings(tmp_path, database)

    async def talk() -> tuple[str, str]:
        async with conversations(settings, database) as convo:
            await say(convo, "/echo")
            for n in range(4):
                assert [o.text for o in await say(convo, f"line {n}")] == [f"Echo: line {n}"]
            (pending,) = await say(convo, "/asker v1", user="cli:bob")
            (answered,) = await say(convo, "/asker v0", user="cli:bob")
            assert pending.approval is not None
            assert answered.approval is not None
            press = await convo.orchestrator.press(
                answered.approval.id, "n", user="cli:bob", admin=False
            )
            assert [o.text for o in press.outbound] == ["ship:v0 -> held"]
            return pending.approval.id, answered.approval.id

    pending, answered = asyncio.run(talk())
    threads = ["cli:ada", "cli:bob", f"approval:{pending}", f"approval:{answered}"]
    states = asyncio.run(graph_states(settings, database, threads))
    assert states[f"approval:{pending}"][2] != []  # it waits in an interrupt()
    before = per_thread(sql)
    assert before[("cli:ada", "")] > 5
    blobs_before = sql("SELECT count(*) FROM checkpoint_blobs")[0][0]

    done = run(database, tmp_path)
    assert done["checkpoints"].error is None
    assert done["checkpoints"].removed == sum(before.values()) - len(before)
    assert set(per_thread(sql).values()) == {1}  # the latest of each thread and namespace
    assert sql("SELECT count(*) FROM checkpoint_blobs")[0][0] < blobs_before
    stale_writes = sql(
        "SELECT count(*) FROM checkpoint_writes w WHERE checkpoint_id <>"
        " (SELECT max(checkpoint_id) FROM checkpoints c WHERE c.thread_id = w.thread_id"
        " AND c.checkpoint_ns = w.checkpoint_ns)"
    )
    assert stale_writes == [(0,)]

    # Every thread reads back as it was (values, next step, interrupts), in a new process;
    # the mode is still echo, and the pending question still answers.
    assert asyncio.run(graph_states(settings, database, threads)) == states
    assert say_in_a_new_process(settings, database, "still here?") == ["Echo: still here?"]

    async def answer() -> list[str]:
        async with conversations(settings, database) as convo:
            press = await convo.orchestrator.press(pending, "y", user="cli:bob", admin=False)
            assert press.ok, press.notice
            return [o.text for o in press.outbound]

    assert asyncio.run(answer()) == ["ship:v1 -> shipped"]

    # An answered question older than its window goes with its whole graph thread.
    sql("UPDATE approvals SET decided_at = now() - interval '31 days' WHERE id = %s", answered)
    assert run(database, tmp_path)["approvals"].removed == 1
    assert sql("SELECT id FROM approvals WHERE id = %s", answered) == []
    left = sql(
        "SELECT (SELECT count(*) FROM checkpoints WHERE thread_id = %s)"
        " + (SELECT count(*) FROM checkpoint_blobs WHERE thread_id = %s)"
        " + (SELECT count(*) FROM checkpoint_writes WHERE thread_id = %s)",
        *[f"approval:{answered}"] * 3,
    )
    assert left == [(0,)]
    assert (
        sql("SELECT count(*) FROM checkpoints WHERE thread_id = %s", f"approval:{pending}")[0][0]
        == 1
    )


def test_release_folders_keep_live_rollback_target_last_n_and_agents_state(
    tmp_path: Path, database: str, sql
) -> None:
    home = tmp_path / "home"
    image_agents = tmp_path / "image-agents"
    write_agent(image_agents, "builtin_one")
    sha = {n: f"{n:040x}" for n in range(1, 10)}

    async def ledger_of_eight() -> None:
        async with open_pool(database) as pool, pool.connection() as conn:
            previous = None
            for n in range(1, 9):
                release = await ledger.cut(
                    conn, sha=sha[n], repository="persais", pr_number=n, job_id=None,
                    pressed_by="cli:ada", conversation=None, previous=previous,
                    grants={f"agent{n}": {}},
                )  # fmt: skip
                # 1, 2, 3 went live in turn; 4-8 failed to load: 3 is live, 2 its target.
                if n in (2, 3):
                    await ledger.event(conn, previous or 0, "superseded", actor="t")
                await ledger.event(conn, release.id, "live" if n <= 3 else "failed", actor="t")
                previous = release.id

    asyncio.run(ledger_of_eight())
    old = time.time() - 2 * 86400
    for n in range(1, 10):  # 9: a folder the ledger does not know (a pinned release)
        folder = home / "releases" / sha[n]
        (folder / "dynamic").mkdir(parents=True)
        files._read_only(folder)
        os.utime(folder, (old, old))
    young = home / "releases" / ("f" * 40)  # unpacked a minute ago by a deploy in progress
    young.mkdir()
    stale, fresh = home / "releases" / f".{sha[1]}.dead", home / "releases" / f".{sha[2]}.busy"
    stale.mkdir()
    fresh.mkdir()
    os.utime(stale, (old, old))
    for agent, days in [("agent1", 40), ("agent8", 40), ("builtin_one", 40), ("agent4", 3)]:
        sql(
            "INSERT INTO agent_state (agent, key, value, bytes, updated_at) VALUES"
            " (%s, 'k', '1', 1, now() - %s * interval '1 day')",
            agent, days,
        )  # fmt: skip

    where = retention.Place(home, image_agents, pinned_release=sha[9])
    done = run(database, tmp_path, policy={"releases_keep": 2}, place=where)
    assert done["release folders"].error is None
    assert done["agent state"].error is None
    left = sorted(p.name for p in (home / "releases").iterdir())
    assert left == sorted([sha[2], sha[3], sha[7], sha[8], sha[9], "f" * 40, fresh.name])
    assert done["release folders"].removed == 5  # 1, 4, 5, 6 and the abandoned scratch
    # agent1 is in no kept release and silent for 40 days; agent4 was written 3 days ago.
    assert sorted(r[0] for r in sql("SELECT agent FROM agent_state")) == [
        "agent4", "agent8", "builtin_one"
    ]  # fmt: skip


def test_a_failing_step_does_not_stop_the_others_and_is_counted(
    tmp_path: Path, database: str, sql
) -> None:
    delivery(sql, "old", "processed", 30)
    sql("DROP TABLE refusals")
    done = run(database, tmp_path)
    assert "refusals" in (done["refusals"].error or "")
    assert done["inbox"].removed == 1
    assert [k for k, o in done.items() if o.error] == ["refusals"]
    metrics = Metrics()
    metrics.count_retention(done.values())
    assert (
        metrics.registry.get_sample_value("persais_retention_failed_total", {"what": "refusals"})
        == 1
    )
    assert (
        metrics.registry.get_sample_value("persais_retention_removed_total", {"what": "inbox"}) == 1
    )


def test_one_worker_runs_each_tick_of_the_periodic_task(database: str, sql) -> None:
    runs: list[str] = []

    def recorder(name: str) -> Any:
        async def prune() -> None:
            runs.append(name)

        return prune

    async def two_workers() -> None:
        async with open_pool(database) as a_pool, open_pool(database) as b_pool:
            queues = []
            for name, pool in (("a", a_pool), ("b", b_pool)):
                queue = DeliveryQueue(
                    max_attempts=1, retry_base_seconds=0, retention=recorder(name),
                    retention_cron="* * * * * *",  # every second
                )  # fmt: skip
                await queue.open(pool)
                queues.append(queue)
            workers = [
                asyncio.create_task(q.run_worker(name=f"w{i}", concurrency=1, queues=(QUEUE,)))
                for i, q in enumerate(queues)
            ]
            await asyncio.sleep(4.5)
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            for queue in queues:
                await queue.close()

    asyncio.run(two_workers())
    ticks = sql(
        "SELECT args->>'timestamp', status::text FROM procrastinate_jobs WHERE task_name = %s",
        RETENTION_TASK,
    )
    stamps = [stamp for stamp, _ in ticks]
    assert len(stamps) >= 2
    assert len(stamps) == len(set(stamps))  # one job per tick, however many workers offered it
    done = [stamp for stamp, status in ticks if status == "succeeded"]
    assert len(runs) == len(done) >= 2  # each run once, by whichever worker took it


def test_every_process_registers_retention_with_the_configured_cron(
    tmp_path: Path, database: str
) -> None:
    settings = make_settings(tmp_path / "home", database, PERSAIS_RETENTION_CRON="5 3 * * *")
    periodic = Runtime(settings, database).queue.app.periodic_registry.periodic_tasks
    task = periodic[(RETENTION_TASK, "retention")]
    assert task.cron == "5 3 * * *"
    assert task.task.queue == QUEUE
    assert task.task.lock == task.task.queueing_lock == "retention:persais"


def test_defaults_and_bad_retention_settings(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, None)
    policy = retention.Policy.from_settings(settings)
    assert (policy.inbox_days, policy.jobs_days, policy.outbox_days) == (14, 7, 7)
    assert (policy.approvals_days, policy.releases_keep) == (30, 5)
    assert settings.retention_cron == "17 * * * *"
    for variable, value, problem in [
        ("PERSAIS_RETENTION_CRON", "hourly", "expected a 5-field cron expression"),
        ("PERSAIS_RETENTION_CRON", "* * * * * *", "expected a 5-field cron expression"),
        ("PERSAIS_RETENTION_INBOX_DAYS", "1", "greater than or equal to 3"),
        ("PERSAIS_RETENTION_JOBS_DAYS", "soon", "valid number"),
        ("PERSAIS_RETENTION_RELEASES_KEEP", "0", "greater than or equal to 1"),
    ]:
        with pytest.raises(SettingsError, match=problem) as caught:
            make_settings(tmp_path, None, **{variable: value})
        assert str(caught.value).startswith(f"{variable}: ")


def test_the_command_counts_in_a_dry_run_and_prunes_in_a_run(
    tmp_path: Path, database: str, sql, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from app.cli import main

    delivery(sql, "old", "processed", 30)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", database)
    monkeypatch.setenv("PERSAIS_HOME", str(tmp_path / "home"))
    for argv, said in [(["retention", "--dry-run"], "would remove"), (["retention"], "removed")]:
        with pytest.raises(SystemExit) as stopped:
            main(argv)
        assert stopped.value.code == 0
        assert re.search(rf"^inbox\s+{said}\s+1 ", capsys.readouterr().out, re.M)
        assert sql("SELECT count(*) FROM inbox") == [(1 if said == "would remove" else 0,)]


def test_a_runtime_runs_the_queued_retention_task_and_counts_it(
    tmp_path: Path, database: str, sql
) -> None:
    delivery(sql, "old", "processed", 30)
    delivery(sql, "new", "processed", 1)
    settings = make_settings(tmp_path / "home", database)

    async def tick() -> float | None:
        runtime = Runtime(settings, database)
        await runtime.start(worker=False)
        try:
            await runtime.queue.app.configure_task(RETENTION_TASK).defer_async(timestamp=0)
            await runtime.queue.app.run_worker_async(
                queues=[QUEUE], wait=False, install_signal_handlers=False
            )
            return runtime.metrics.registry.get_sample_value(
                "persais_retention_removed_total", {"what": "inbox"}
            )
        finally:
            await runtime.stop()

    assert asyncio.run(tick()) == 1
    assert sql("SELECT delivery_id FROM inbox") == [("new",)]
    assert sql(
        "SELECT status::text FROM procrastinate_jobs WHERE task_name = %s", RETENTION_TASK
    ) == [("succeeded",)]
