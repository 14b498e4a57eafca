"""A rolled-back agent stays rolled back (issue 17, item 10): on the local forge the rollback
merges its revert, a later deploy never serves the agent again from a base that still holds
it, and on GitHub the Deploy card says so while the revert pull request is open."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from app.audit import record
from app.deploy import granting, ledger
from app.deploy.files import release_dir
from app.forge.github import GitHubForge
from app.github.client import GitHubApp
from app.settings import Settings, load_settings
from tests.support.deploys import (
    ECHO,
    agent_files,
    commit_on,
    git,
    mechanic_pull,
    outcome,
    persais,
    press_deploy,
    say,
)
from tests.support.fake_github import APP_ID, app_key_pair, fake_github
from tests.support.pools import open_pool

HELLO_AGENT = """from app.agents.base import Agent, AgentContext, Message, Reply


class Hello(Agent):
    async def handle(self, message: Message, ctx: AgentContext) -> Reply | str:
        return f"Hello, {message.text}"
"""
HELLO = agent_files("hello", HELLO_AGENT, "Ada", "Hello, Ada")
BYE = agent_files("bye", HELLO_AGENT.replace("Hello, ", "Bye, "), "Ada", "Bye, Ada")


async def roll_back(convo: Any) -> str:
    from app.orchestrator.orchestrator import Inbound

    asked = Inbound(conversation="cli:ada", channel="terminal", user="cli:ada",
                    user_name="ada", text="/rollback", admin=True)  # fmt: skip
    offer = (await convo.orchestrator.handle(asked))[0]
    assert offer.approval is not None
    await convo.orchestrator.press(offer.approval.id, "rollback", user="cli:ada", admin=True)
    return await outcome(convo)


def test_a_deploy_after_a_rollback_does_not_bring_the_agent_back(
    settings: Settings, database: str, sql: Any
) -> None:
    async def run() -> None:
        async with persais(settings, database) as convo:
            job, _, _ = await mechanic_pull(convo, settings, ECHO)
            await press_deploy(convo, job)
            assert "is live" in await outcome(convo)
            # Made while main held echo: its branch holds echo too.
            later, number, _ = await mechanic_pull(convo, settings, HELLO)
            assert "The revert of #1 is merged as " in await roll_back(convo)
            await press_deploy(convo, later)
            result = await outcome(convo)
            assert result.startswith("✅ release 3 (")
            assert f"PR #{number}) is live" in result
            assert await say(convo, "/hello Ada") == ["Hello, Ada"]
            assert (await say(convo, "/echo Hello"))[0].startswith("Unknown command /echo")

    asyncio.run(run())
    ((sha,),) = sql("SELECT sha FROM releases WHERE id = 3")
    agents = release_dir(settings.home, sha) / "dynamic" / "agents"
    assert (agents / "hello").is_dir()
    assert not (agents / "echo").exists()
    bare = settings.home / "forge" / "persais.git"
    assert "dynamic/agents/echo/" not in git(bare, "ls-tree", "-r", "--name-only", sha)


def test_a_base_that_holds_a_rolled_back_agent_is_refused_unless_the_change_is_that_agent(
    settings: Settings, database: str, sql: Any
) -> None:
    async def run() -> None:
        async with persais(settings, database) as convo:
            job, _, _ = await mechanic_pull(convo, settings, ECHO)
            await press_deploy(convo, job)
            assert "is live" in await outcome(convo)
            assert "is merged as" in await roll_back(convo)
            # Someone puts the very same echo back on main by hand.
            bare = settings.home / "forge" / "persais.git"
            commit_on(bare, "main", "main", ECHO, "echo again, by hand")
            later, _, _ = await mechanic_pull(convo, settings, BYE)
            await press_deploy(convo, later)
            assert await outcome(convo) == (
                "🚫 Not deployed: main still holds echo, rolled back in release 2: revert it first."
            )
            assert (await say(convo, "/echo Hello"))[0].startswith("Unknown command /echo")
            # A change to echo itself is that change's business: it deploys.
            fixed = {**ECHO, "dynamic/agents/echo/agent.py": ECHO[
                "dynamic/agents/echo/agent.py"].replace("Echo: ", "Echo! ")}  # fmt: skip
            fixed["tests/dynamic/test_echo.py"] = fixed["tests/dynamic/test_echo.py"].replace(
                "Echo: Hello", "Echo! Hello"
            )
            again, _, _ = await mechanic_pull(convo, settings, fixed)
            await press_deploy(convo, again)
            assert "is live: /echo answering." in await outcome(convo)
            # ... and puts echo back in service on purpose: the rollback no longer holds.
            await press_deploy(convo, later)
            assert "is live: /bye answering." in await outcome(convo)
            assert await say(convo, "/echo Hello") == ["Echo! Hello"]

    asyncio.run(run())
    refused = sql("SELECT subject, detail FROM audit_log WHERE action = 'deploy.refused'")
    assert refused == [
        ("pr:3", {"why": "main still holds echo, rolled back in release 2: revert it first"})
    ]
    assert sql("SELECT state FROM pull_requests WHERE number = 3") == [("merged",)]


PRIVATE, PUBLIC = app_key_pair()
HOME = "octo/persais"


def test_on_github_the_deploy_card_says_the_base_still_holds_a_rolled_back_agent(
    tmp_path: Path, database: str
) -> None:
    with fake_github(PUBLIC) as (url, fake):
        fake.add_repo(HOME, 77, files={"dynamic/agents/README.md": "agents\n"})
        fake.push(HOME, "mechanic/plc-j1", agent_files("plc", HELLO_AGENT, "x", "Hello, x"))
        first = fake.open_pull(HOME, "mechanic/plc-j1", title="Add plc")
        settings = load_settings(
            None, GITHUB_APP_ID=APP_ID, GITHUB_PRIVATE_KEY=PRIVATE, GITHUB_API_URL=url,
            DATABASE_URL=database,
        )  # fmt: skip
        forge = GitHubForge(GitHubApp(settings), tmp_path / "home", HOME)

        async def run() -> tuple[list[str], list[str]]:
            async with open_pool(database) as pool:
                head = (await forge.pull_state(first)).head_sha
                merged = await forge.merge(first, sha=head, title="Add plc")
                async with pool.connection() as conn:
                    image = await ledger.image(conn, repository=HOME, commit=None, grants={})
                    release = await ledger.cut(
                        conn, sha=merged, repository=HOME, pr_number=first, job_id=None,
                        pressed_by="ada", conversation=None, previous=image.id, grants={},
                    )  # fmt: skip
                    await ledger.event(conn, release.id, "live", actor="ada")
                    await ledger.event(conn, release.id, "rolled_back", actor="ada")
                    await ledger.event(conn, image.id, "live", actor="ada")
                branch = f"persais/revert-release-{release.id}"
                revert_head = await forge.revert_branch(merged, "main", branch, "Revert #1")
                revert = await forge.publish(
                    job_id="revert-2", branch=branch, head_sha=revert_head, base="main",
                    title="Revert #1", body="revert",
                )  # fmt: skip
                async with pool.connection() as conn:
                    await record(conn, actor="ada", action="release.revert_opened",
                                 subject=f"release:{release.id}",
                                 detail={"pr": revert.number})  # fmt: skip
                fake.push(HOME, "mechanic/bye-j2", BYE)
                other = fake.open_pull(HOME, "mechanic/bye-j2", title="Add bye")
                before = await granting.card_of_pull(pool, settings, forge, other)
                await forge.merge(revert.number, sha=revert_head, title="Revert #1")
                after = await granting.card_of_pull(pool, settings, forge, other)
                return before, after

        before, after = asyncio.run(run())
    assert "⚠ main still holds plc, rolled back in release 2: merge the revert PR #2 first" in (
        before
    )
    assert not any("still holds" in line for line in after)
