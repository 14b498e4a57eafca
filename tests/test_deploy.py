"""Deploy, releases and rollback on the embedded default: the local forge (real git merges),
the local deployer (in-process hot reload), the releases ledger in Postgres."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import psycopg
import pytest

from app.deploy.files import release_dir, remove
from app.settings import Settings
from tests.support.deploys import (
    ECHO,
    agent_files,
    commit_on,
    mechanic_pull,
    offer_deploy,
    outcome,
    persais,
    press_deploy,
    say,
)

BROKEN = agent_files("shout", "raise RuntimeError('no config')\n", "hi", "HI")


def test_deploy_makes_the_new_agent_answer_and_is_recorded(
    settings: Settings, database: str, sql
) -> None:
    async def run() -> None:
        async with persais(settings, database) as convo:
            assert (await say(convo, "/echo Hello"))[0].startswith("Unknown command /echo")
            job, number, _ = await mechanic_pull(convo, settings, ECHO)
            question = await offer_deploy(convo, job)
            press = await convo.orchestrator.press(question, "deploy", user="cli:ada", admin=False)
            assert press.outbound[0].text == f"🚀 Deploying pull request #{number}…"
            result = await outcome(convo)
            sha = str(convo.deployments.here.running.sha)
            assert result == f"✅ release 2 ({sha[:12]}, PR #{number}) is live: /echo answering."
            assert await say(convo, "/echo Hello") == ["Echo: Hello"]
            releases = "\n".join(await say(convo, "/releases"))
            assert "▶ release 2" in releases
            assert "by cli:ada" in releases
            assert "  release 1 (image " in releases
            assert ") — superseded since" in releases
            assert "This process runs release 2" in releases
            agents = "\n".join(await say(convo, "/agents"))
            assert "This process runs release 2" in agents
            assert "/echo  echo 0.1.0 (dynamic)" in agents

    asyncio.run(run())
    ((sha, pr, _job, by, previous),) = sql(
        "SELECT sha, pr_number, job_id, pressed_by, previous FROM releases WHERE source = 'merge'"
    )
    assert (pr, by, previous) == (1, "cli:ada", 1)
    assert sql("SELECT state, merge_sha FROM pull_requests") == [("merged", sha)]
    assert sql("SELECT status FROM jobs") == [("deployed",)]
    events = sql("SELECT release, status FROM release_events ORDER BY id")
    assert events == [(1, "live"), (2, "cut"), (2, "loading"), (1, "superseded"), (2, "live")]
    # The release holds dynamic/ and tests/dynamic/ at the merge commit, read-only.
    folder = release_dir(settings.home, sha)
    assert sorted(p.name for p in folder.iterdir()) == [".complete", "dynamic", "tests"]
    assert (folder / "dynamic/agents/echo/agent.py").read_text() == ECHO[
        "dynamic/agents/echo/agent.py"
    ]
    assert not os.access(folder / "dynamic/agents/echo/agent.py", os.W_OK) or os.geteuid() == 0
    assert not stat.S_IWUSR & (folder / "dynamic/agents/echo").stat().st_mode
    actions = [
        a
        for (a,) in sql(
            "SELECT action FROM audit_log WHERE action LIKE 'deploy.%%' OR action LIKE 'release.%%'"
        )
    ]
    assert actions == ["deploy.requested", "deploy.merged", "release.cut", "release.live"]
    # The ledger is append-only.
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        sql("UPDATE releases SET pressed_by = 'eve'")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        sql("DELETE FROM release_events")


def test_a_release_whose_agent_fails_to_load_never_serves(
    settings: Settings, database: str, sql
) -> None:
    async def run() -> None:
        async with persais(settings, database) as convo:
            job, _, _ = await mechanic_pull(convo, settings, ECHO)
            await press_deploy(convo, job)
            assert "is live" in await outcome(convo)
            before = convo.registry.current
            job, _, _ = await mechanic_pull(convo, settings, BROKEN)
            await press_deploy(convo, job)
            result = await outcome(convo)
            assert result.startswith("✗ release 3 (")
            assert (
                "failed verification, so it was rolled back: shout did not load: "
                "RuntimeError: no config" in result
            )
            assert "release 2 (" in result.splitlines()[1]
            assert "stays in service; its agents still answer." in result
            assert convo.registry.current is before  # never swapped
            assert await say(convo, "/echo still") == ["Echo: still"]
            assert (await say(convo, "/shout hi"))[0].startswith("Unknown command /shout")
            assert "failed since" in "\n".join(await say(convo, "/releases"))

    asyncio.run(run())
    assert sql("SELECT release, status FROM release_events WHERE release = 3 ORDER BY id") == [
        (3, "cut"),
        (3, "loading"),
        (3, "failed"),
    ]
    assert sql("SELECT status FROM jobs ORDER BY created_at") == [("deployed",), ("opened",)]


def test_a_smoke_answer_that_differs_from_the_test_fails_the_release(
    settings: Settings, database: str, sql
) -> None:
    wrong = agent_files(
        "echo",
        ECHO["dynamic/agents/echo/agent.py"].replace("Echo: ", "echo "),
        "Hello",
        "Echo: Hello",
    )

    async def run() -> None:
        async with persais(settings, database) as convo:
            job, _, _ = await mechanic_pull(convo, settings, wrong)
            await press_deploy(convo, job)
            result = await outcome(convo)
            assert "/echo 'Hello' answered 'echo Hello', its test expects 'Echo: Hello'" in result
            assert (await say(convo, "/echo Hello"))[0].startswith("Unknown command /echo")

    asyncio.run(run())


def test_rollback_restores_the_previous_agents_and_merges_the_revert(
    settings: Settings, database: str, sql
) -> None:
    async def run() -> None:
        async with persais(settings, database) as convo:
            assert await say(convo, "/rollback", admin=True) == [
                "There is no earlier release to roll back to."
            ]
            job, number, _ = await mechanic_pull(convo, settings, ECHO)
            await press_deploy(convo, job)
            assert "is live" in await outcome(convo)
            offer = (await convo.orchestrator.handle(_inbound("/rollback", admin=True)))[0]
            assert offer.text.startswith("In service: release 2 (")
            assert "Previous: release 1 (image " in offer.text
            assert offer.approval is not None
            assert [c[1] for c in offer.approval.choices] == ["Roll back", "Cancel"]
            press = await convo.orchestrator.press(
                offer.approval.id, "rollback", user="cli:ada", admin=True
            )
            assert press.outbound[0].text == "↩ Rolling back…"
            result = await outcome(convo)
            assert result.startswith("↩ Rolled back: release 1 (image ")
            assert ") is in service again (was release 2 (" in result
            # The local forge has nobody to merge a revert but Persais: it is merged here.
            assert f"\nThe revert of #{number} is merged as " in result
            assert result.endswith("(pull request #2).")
            assert (await say(convo, "/echo Hello"))[0].startswith("Unknown command /echo")

    asyncio.run(run())
    assert sql("SELECT release, status FROM release_events WHERE id > 5 ORDER BY id") == [
        (2, "rolled_back"),
        (1, "live"),
    ]
    ((branch, state, merge),) = sql(
        "SELECT branch, state, merge_sha FROM pull_requests WHERE number = 2"
    )
    assert (branch, state) == ("persais/revert-release-2", "merged")
    ((detail,),) = sql("SELECT detail FROM audit_log WHERE action = 'release.reverted'")
    assert detail == {"pr": 2, "merge": merge}
    bare = settings.home / "forge" / "persais.git"
    from tests.support.deploys import git

    assert git(bare, "rev-parse", "main") == merge
    assert "dynamic/agents/echo" not in git(bare, "ls-tree", "-r", "--name-only", "main")


def test_a_restart_after_deploy_loads_the_released_set_even_on_a_fresh_disk(
    settings: Settings, database: str
) -> None:
    async def deploy() -> str:
        async with persais(settings, database) as convo:
            job, _, _ = await mechanic_pull(convo, settings, ECHO)
            await press_deploy(convo, job)
            assert "is live" in await outcome(convo)
            assert convo.deployments.here.running.sha is not None
            return convo.deployments.here.running.sha

    async def restart() -> None:
        async with persais(settings, database) as convo:
            assert convo.deployments.here.running.release is not None
            assert convo.deployments.here.running.release.id == 2
            assert await say(convo, "/echo again") == ["Echo: again"]

    sha = asyncio.run(deploy())
    remove(release_dir(settings.home, sha))  # the machine's disk was wiped
    asyncio.run(restart())
    assert (release_dir(settings.home, sha) / ".complete").is_file()


def test_deploy_pressed_twice_merges_once_and_releases_once(
    settings: Settings, database: str, sql
) -> None:
    async def run() -> None:
        async with persais(settings, database) as convo:
            job, number, _ = await mechanic_pull(convo, settings, ECHO)
            question = await offer_deploy(convo, job)
            first, second = await asyncio.gather(
                convo.orchestrator.press(question, "deploy", user="cli:ada", admin=False),
                convo.orchestrator.press(question, "deploy", user="cli:ada", admin=False),
            )
            assert sorted([first.ok, second.ok]) == [False, True]
            again = await offer_deploy(convo, job)  # the same button shown twice
            await convo.orchestrator.press(again, "deploy", user="cli:ada", admin=False)
            assert await say(convo, f"/deploy {number}") == [
                f"🚀 Deploying pull request #{number}…"
            ]
            await outcome(convo)
            async with convo.pool.connection() as conn:
                cur = await conn.execute(
                    "SELECT text FROM outbox WHERE key LIKE 'deploy:%%:result' ORDER BY id"
                )
                results = [r[0] for r in await cur.fetchall()]
            assert len(results) == 3
            assert sum("is live" in r for r in results) == 1
            assert sum(f"Pull request #{number} is already release 2" in r for r in results) == 2

            # The request that deployed, run again (a retry of a task that had finished its
            # work): it finds the release live and keeps the answer it gave.
            async with convo.pool.connection() as conn:
                cur = await conn.execute(
                    "SELECT key FROM outbox WHERE text LIKE '%%is live%%' AND key LIKE 'deploy:%%'"
                )
                (key,) = await cur.fetchone() or ("",)
            rid = key.split(":")[1]
            await convo.deployments.run("deploy", number, "cli:ada", "cli:ada", rid)
            async with convo.pool.connection() as conn:
                cur = await conn.execute("SELECT text FROM outbox WHERE key = %s", (key,))
                (kept,) = await cur.fetchone() or ("",)
            assert "is live" in kept

    asyncio.run(run())
    assert sql("SELECT count(*) FROM releases WHERE source = 'merge'") == [(1,)]
    bare = settings.home / "forge" / "persais.git"
    from tests.support.deploys import git

    merges = git(bare, "log", "--format=%s", "-20", "main").splitlines()
    assert sum(line.endswith("(#1)") for line in merges) == 1


def test_deploy_refuses_a_head_that_was_not_validated(
    settings: Settings, database: str, sql
) -> None:
    async def run() -> None:
        async with persais(settings, database) as convo:
            job, _, head = await mechanic_pull(convo, settings, ECHO)
            bare = settings.home / "forge" / "persais.git"
            moved = commit_on(
                bare,
                f"mechanic/{job}",
                "main",
                {"dynamic/agents/echo/extra.py": "x = 1\n"},
                "sneak",
            )
            await press_deploy(convo, job)
            result = await outcome(convo)
            assert result == (
                f"🚫 Not deployed: its head {moved[:12]} is not the head the Mechanic validated "
                f"({head[:12]}); new commits must be validated first (/mechanic fix …)."
            )
            assert (await say(convo, "/echo Hello"))[0].startswith("Unknown command")

    asyncio.run(run())
    assert sql("SELECT state FROM pull_requests") == [("open",)]
    assert sql("SELECT count(*) FROM releases") == [(0,)]
    assert sql("SELECT count(*) FROM audit_log WHERE action = 'deploy.refused'") == [(1,)]


def test_who_may_deploy_and_what_is_not_hot_deployed(
    settings: Settings, database: str, sql
) -> None:
    async def run() -> None:
        async with persais(settings, database) as convo:
            _, number, _ = await mechanic_pull(convo, settings, {"README.md": "changed\n", **ECHO})
            job = await _job(convo)
            assert await say(convo, f"/deploy {number}", user="cli:ben") == [
                f"Only the person who asked for job {job}, or an admin, may deploy it."
            ]
            assert await say(convo, "/deploy 99", admin=True) == [
                "Pull request #99 was not built and validated by the Mechanic here, so I will not "
                "hot-deploy it. Merge it on the forge; the deploy workflow ships it."
            ]
            assert (await say(convo, "/deploy soon"))[0].startswith("Which pull request?")
            await say(convo, f"/deploy {number}")
            result = await outcome(convo)
            assert f"✅ Pull request #{number} merged as" in result
            assert (
                "It changes README.md — outside dynamic/ and tests/dynamic/ — so it is not "
                "hot-deployed" in result
            )
            assert (await say(convo, "/echo Hello"))[0].startswith("Unknown command")

    asyncio.run(run())
    assert sql("SELECT state FROM pull_requests") == [("merged",)]
    assert sql("SELECT count(*) FROM releases") == [(0,)]


async def _job(convo) -> str:
    async with convo.pool.connection() as conn:
        cur = await conn.execute("SELECT id FROM jobs")
        return str((await cur.fetchone())[0])


def _inbound(text: str, *, admin: bool = False):
    from app.orchestrator.orchestrator import Inbound

    return Inbound(
        conversation="cli:ada",
        channel="terminal",
        user="cli:ada",
        user_name="ada",
        text=text,
        admin=admin,
    )


def test_release_files_are_whole_and_agents_touched(tmp_path: Path) -> None:
    from app.deploy.files import agents_touched, hot_deployable

    assert agents_touched(
        ["dynamic/agents/echo/agent.py", "tests/dynamic/test_plc.py", "README.md"]
    ) == {"echo", "plc"}
    assert hot_deployable(["dynamic/agents/echo/agent.py", "tests/dynamic/test_echo.py"]) == []
    assert hot_deployable(["dynamic/x", "app/server.py", "tests/test_x.py"]) == [
        "app/server.py",
        "tests/test_x.py",
    ]
