"""The orchestrator: routing and modes, approvals (first press wins, strangers, expiry)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import psycopg
import pytest

from app.conversations import Conversations
from app.runtime import Runtime
from app.settings import Settings
from app.version import BuildInfo
from tests.support.agents import write_agent
from tests.support.config import make_settings
from tests.support.conversation import ASKER, conversations, say, say_in_a_new_process


def agent_settings(tmp_path: Path, database: str, **values: object) -> Settings:
    agents = tmp_path / "agents"
    write_agent(agents, "echo")
    write_agent(agents, "asker", ASKER)
    write_agent(agents, "broken", "raise ImportError('half-written')\n")
    return make_settings(tmp_path / "home", database, PERSAIS_AGENTS_DIR=str(agents), **values)


def test_commands_modes_and_a_quarantined_agent_beside_working_ones(
    tmp_path: Path, database: str, sql
) -> None:
    settings = agent_settings(tmp_path, database)

    async def run() -> None:
        async with conversations(settings, database) as convo:
            assert [o.text for o in await say(convo, "/echo Hello")] == ["Echo: Hello"]
            switched = await say(convo, "/echo")
            assert "now talking to echo" in switched[0].text
            assert [o.text for o in await say(convo, "repeat me")] == ["Echo: repeat me"]
            assert (await say(convo, "/cancel"))[0].text == "Left /echo mode."
            assert "not in any mode" in (await say(convo, "repeat me"))[0].text
            unknown = await say(convo, "/nope")
            assert unknown[0].text == "Unknown command /nope."
            assert "/echo" in unknown[1].text  # help lists the loaded agents
            listing = (await say(convo, "/agents"))[0].text
            assert "broken: ImportError: half-written" in listing
            assert (await say(convo, "/rollback"))[0].text == "Only admins may use /rollback."
            assert "no earlier release" in (await say(convo, "/rollback", admin=True))[0].text
            status = (await say(convo, "/status"))[0].text
            assert "cli:ada" in status

    asyncio.run(run())
    assert sql("SELECT mode, messages FROM conversations WHERE id = 'cli:ada'") == [(None, 10)]
    assert ("agent.quarantined", "agent:broken") in sql("SELECT action, subject FROM audit_log")


def test_the_mode_survives_a_restart(tmp_path: Path, database: str) -> None:
    settings = agent_settings(tmp_path, database)

    say_in_a_new_process(settings, database, "/echo")
    assert say_in_a_new_process(settings, database, "still here?") == ["Echo: still here?"]


def test_an_approval_asked_before_a_restart_is_answered_after_it(
    tmp_path: Path, database: str, sql
) -> None:
    settings = agent_settings(tmp_path, database)

    async def ask() -> str:
        async with conversations(settings, database) as convo:
            (question,) = await say(convo, "/asker v2")
            assert question.text == "Ship v2?"
            assert question.approval is not None
            assert question.approval.choices == [["y", "Ship it"], ["n", "Not now"]]
            return question.approval.id

    async def answer(approval_id: str) -> None:
        async with conversations(settings, database) as convo:
            stranger = await convo.orchestrator.press(
                approval_id, "y", user="cli:mallory", admin=False
            )
            assert not stranger.ok
            assert "Only the person who asked" in stranger.notice
            press = await convo.orchestrator.press(approval_id, "y", user="cli:ada", admin=False)
            assert press.ok
            assert [o.text for o in press.outbound] == ["ship:v2 -> shipped"]
            again = await convo.orchestrator.press(approval_id, "n", user="cli:ada", admin=False)
            assert not again.ok
            assert again.notice == "Already answered: Ship it by cli:ada."
            assert again.outbound == []

    approval_id = ask_id = asyncio.run(ask())
    asyncio.run(answer(ask_id))
    assert sql("SELECT status, choice, decided_by FROM approvals WHERE id = %s", approval_id) == [
        ("decided", "y", "cli:ada")
    ]
    actions = [a for (a,) in sql("SELECT action FROM audit_log WHERE subject LIKE 'approval:%%'")]
    assert actions == ["approval.asked", "approval.refused", "approval.decided"]


def test_simultaneous_presses_decide_once(tmp_path: Path, database: str) -> None:
    settings = agent_settings(tmp_path, database)

    async def run() -> None:
        async with conversations(settings, database) as convo:
            (question,) = await say(convo, "/asker race")
            assert question.approval is not None
            presses = await asyncio.gather(
                *(
                    convo.orchestrator.press(question.approval.id, key, user="cli:ada", admin=True)
                    for key in ("y", "n", "y", "n")
                )
            )
            assert sum(p.ok for p in presses) == 1
            winner = next(p for p in presses if p.ok)
            assert len(winner.outbound) == 1

    asyncio.run(run())


def test_an_unanswered_question_expires_and_says_so(tmp_path: Path, database: str, sql) -> None:
    settings = agent_settings(tmp_path, database, PERSAIS_APPROVAL_TIMEOUT_SECONDS=0.2)

    async def run() -> None:
        async with conversations(settings, database) as convo:
            (question,) = await say(convo, "/asker late")
            await asyncio.sleep(0.3)
            done = await convo.orchestrator.expire_due()
            assert [(q.id, [o.text for o in out]) for q, out in done] == [
                (question.approval.id, ["The question expired without an answer."])  # type: ignore[union-attr]
            ]
            late = await convo.orchestrator.press(
                question.approval.id,  # type: ignore[union-attr]
                "y",
                user="cli:ada",
                admin=False,
            )
            assert late.notice == "This question has expired."

    asyncio.run(run())
    assert sql("SELECT status FROM approvals") == [("expired",)]


def test_a_decision_a_crash_left_undelivered_is_delivered_by_the_sweep(
    tmp_path: Path, database: str, sql
) -> None:
    settings = agent_settings(tmp_path, database)

    async def run() -> None:
        async with conversations(settings, database) as convo:
            (question,) = await say(convo, "/asker crash")
            approval_id = question.approval.id  # type: ignore[union-attr]
        # The process recorded the press and died before resuming the graph:
        sql(
            "UPDATE approvals SET status = 'decided', choice = 'n', decided_by = 'cli:ada',"
            " decided_at = now() - interval '1 minute' WHERE id = %s",
            approval_id,
        )
        async with conversations(settings, database) as convo:
            done = await convo.orchestrator.expire_due()
            assert [[o.text for o in out] for _, out in done] == [["ship:crash -> held"]]
            assert await convo.orchestrator.expire_due() == []  # delivered once

    asyncio.run(run())


def test_a_thread_written_by_another_graph_version_is_not_resumed_silently(
    tmp_path: Path, database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.orchestrator.nodes import route

    settings = agent_settings(tmp_path, database)

    say_in_a_new_process(settings, database, "/echo")
    monkeypatch.setattr(route, "GRAPH_VERSION", route.GRAPH_VERSION + 1)  # new code
    texts = say_in_a_new_process(settings, database, "hello")
    assert texts[0] == route.UPGRADED
    assert "not in any mode" in texts[1]


def test_processes_starting_together_on_a_fresh_database_all_start(
    tmp_path: Path, database: str, caplog: pytest.LogCaptureFixture
) -> None:
    """LangGraph's checkpoint setup runs under the migrations' lock: three processes that
    start at once on a database without its tables (each on connections of its own) all
    come up, and nothing is left open."""
    processes = [agent_settings(tmp_path / f"p{i}", database) for i in range(3)]

    async def run() -> None:
        runtimes = [Runtime(settings, database) for settings in processes]
        for runtime in runtimes:
            await runtime.start(worker=False)
        convos = [
            Conversations(s, r.pool, database, BuildInfo("0.1.0", "test"))
            for s, r in zip(processes, runtimes, strict=True)
        ]
        try:
            started = await asyncio.gather(*(c.start() for c in convos), return_exceptions=True)
            assert started == [None, None, None]
            for i, convo in enumerate(convos):
                said = await say(convo, f"/echo from {i}", user=f"cli:p{i}")
                assert [o.text for o in said] == [f"Echo: from {i}"]
        finally:
            for convo in convos:
                await convo.stop()
            for runtime in runtimes:
                await runtime.stop()
        assert all(c.graph_pool.closed for c in convos)

    asyncio.run(run())
    troubles = [
        r for r in caplog.records
        if r.levelno >= logging.ERROR or "destroyed" in r.getMessage() or "open" in r.getMessage()
    ]  # fmt: skip
    assert not troubles, caplog.text


def test_a_failed_start_closes_what_it_opened(tmp_path: Path, database: str, sql) -> None:
    """A start that fails (here LangGraph's setup, on a damaged table of its own) leaves
    no pool open behind it, and the error reaches the caller."""
    sql("CREATE TABLE checkpoint_migrations (version_of_something_else integer)")
    settings = agent_settings(tmp_path, database)

    async def run() -> None:
        runtime = Runtime(settings, database)
        await runtime.start(worker=False)
        convo = Conversations(settings, runtime.pool, database, BuildInfo("0.1.0", "test"))
        try:
            with pytest.raises(psycopg.errors.UndefinedColumn):
                await convo.start()
            assert convo.graph_pool.closed
        finally:
            await runtime.stop()

    asyncio.run(run())
