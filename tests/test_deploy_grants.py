"""Grants need a person: a release that adds or widens what an agent is granted is refused
for whoever asked for the job unless they are an admin, at the press and again in the
worker, and goes live after an admin's press with its grants in the ledger. On the
embedded default: the local forge, the local deployer, the ledger in Postgres."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

from app.conversations import Conversations
from app.deploy import granting
from app.forge.local import LocalForge
from app.forge.lock import repository_lock
from app.mechanic_jobs.composed import template_plan
from app.settings import CHECKOUT_ROOT, Settings
from mechanic.aider import AiderModel
from mechanic.job import JobDeps, run_job
from mechanic.llm import ChatModel
from tests.support.deploys import ECHO, agent_files, mechanic_pull, outcome, persais, say
from tests.support.git_repos import home_repository
from tests.support.pools import open_pool

WEATHER_AGENT = """from app.agents.base import Agent, AgentContext, Message, Reply


class Weather(Agent):
    async def handle(self, message: Message, ctx: AgentContext) -> Reply | str:
        return f"Sunny in {message.text}"
"""
ASKS_HTTP = '\n[permissions.http]\nhosts = ["api.open-meteo.com"]\nwhy = "fetch the forecast"\n'
GRANT = "weather: http → api.open-meteo.com (new)"
REFUSAL = f"🚫 Not deployed: this release grants {GRANT}; an admin must deploy it."
HELD = {"weather": {"http": {"hosts": ["api.open-meteo.com"], "why": "fetch the forecast"}}}


def weather(code: str = WEATHER_AGENT, expect: str = "Sunny in Paris") -> dict[str, str]:
    files = agent_files("weather", code, "Paris", expect)
    files["dynamic/agents/weather/agent.toml"] += ASKS_HTTP
    return files


async def card(convo: Conversations, job: str) -> tuple[str, str]:
    """The job's result as the chat shows it, [Deploy] and all: (text, approval id)."""
    await convo.mechanic.run(job)  # an opened job: its worker only tells how it ended
    async with convo.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT text, approval FROM outbox WHERE key = %s", (f"job:{job}:result",)
        )
        row = await cur.fetchone()
    assert row is not None
    assert row[1] is not None
    return str(row[0]), str(row[1])


def test_a_release_that_widens_http_is_refused_for_its_asker_and_deployed_by_an_admin(
    settings: Settings, database: str, sql: Any
) -> None:
    async def run() -> None:
        async with persais(settings, database) as convo:
            job, number, _ = await mechanic_pull(convo, settings, weather(), user="cli:bob")
            text, question = await card(convo, job)
            assert text.endswith(
                "\n🔑 grants this release adds or widens (an admin must deploy it):\n  " + GRANT
            )
            press = await convo.orchestrator.press(question, "deploy", user="cli:bob", admin=False)
            (refused,) = press.outbound
            assert refused.text == REFUSAL
            assert refused.approval is not None  # [Deploy] again, for an admin
            assert [c[1] for c in refused.approval.choices] == ["Deploy", "View PR"]
            assert await say(convo, f"/deploy {number}", user="cli:bob") == [REFUSAL]

            press = await convo.orchestrator.press(
                refused.approval.id, "deploy", user="cli:ada", admin=True
            )
            assert press.outbound[0].text == f"🚀 Deploying pull request #{number}…"
            result = await outcome(convo, "cli:bob")
            assert result.endswith(f"is live: /weather answering.\n🔑 granted {GRANT}")
            assert await say(convo, "/weather Paris", user="cli:bob") == ["Sunny in Paris"]
            releases = "\n".join(await say(convo, "/releases"))
            assert "by cli:ada\n    grants: weather: http → api.open-meteo.com\n" in releases

            # Nothing new against the release in service: the asker deploys it alone.
            kinder = weather(WEATHER_AGENT.replace("Sunny", "Mild"), "Mild in Paris")
            job, number, _ = await mechanic_pull(convo, settings, kinder, user="cli:bob")
            text, question = await card(convo, job)
            assert text.endswith("\ngrants: none new")
            press = await convo.orchestrator.press(question, "deploy", user="cli:bob", admin=False)
            assert press.outbound[0].text == f"🚀 Deploying pull request #{number}…"
            assert (await outcome(convo, "cli:bob")).endswith("is live: /weather answering.")
            assert await say(convo, "/weather Paris", user="cli:bob") == ["Mild in Paris"]

    asyncio.run(run())
    releases = sql("SELECT source, pressed_by, grants FROM releases ORDER BY id")
    assert releases == [("image", "persais", {}), ("merge", "cli:ada", HELD),
                        ("merge", "cli:bob", HELD)]  # fmt: skip
    refusals = sql(
        "SELECT actor, detail FROM audit_log WHERE action = 'deploy.refused' ORDER BY id"
    )
    assert refusals == [("cli:bob", {"why": "grants", "grants": [GRANT]})] * 2
    cut = sql("SELECT actor, detail->'grants' FROM audit_log WHERE action = 'release.cut'")
    assert cut == [("cli:ada", [GRANT]), ("cli:bob", [])]


def test_a_release_with_no_new_grants_deploys_for_whoever_asked(
    settings: Settings, database: str, sql: Any
) -> None:
    async def run() -> None:
        async with persais(settings, database) as convo:
            job, _, _ = await mechanic_pull(convo, settings, ECHO, user="cli:bob")
            text, question = await card(convo, job)
            assert text.endswith("\ngrants: none new")
            await convo.orchestrator.press(question, "deploy", user="cli:bob", admin=False)
            assert (await outcome(convo, "cli:bob")).endswith("is live: /echo answering.")

    asyncio.run(run())
    assert sql("SELECT pressed_by, grants FROM releases WHERE source = 'merge'") == [
        ("cli:bob", {"echo": {}})
    ]
    assert sql("SELECT count(*) FROM audit_log WHERE action = 'deploy.refused'") == [(0,)]


def test_the_worker_checks_the_grants_again_before_and_after_the_merge(
    settings: Settings, database: str, sql: Any
) -> None:
    """A deploy queued for someone who is not an admin (the release in service changed
    since they asked, say) is refused in the worker: before merging, and, for a pull
    request merged meanwhile, on the merged manifests before any release is cut."""

    async def run() -> None:
        async with persais(settings, database) as convo:
            _, number, head = await mechanic_pull(convo, settings, weather(), user="cli:bob")
            await convo.deployments.run("deploy", number, "cli:bob", "cli:bob", "r1")
            assert await outcome(convo, "cli:bob") == REFUSAL
            assert sql("SELECT state FROM pull_requests") == [("open",)]

            forge = LocalForge(convo.pool, settings.home, CHECKOUT_ROOT)
            await forge.merge(number, sha=head, title="merged on the forge")
            await convo.deployments.run("deploy", number, "cli:bob", "cli:bob", "r2")
            assert await outcome(convo, "cli:bob") == (
                f"🚫 Not deployed: pull request #{number} is merged, but this release grants "
                f"{GRANT}; an admin must deploy it (/deploy {number})."
            )
            assert sql("SELECT count(*) FROM releases WHERE source = 'merge'") == [(0,)]

            assert await say(convo, f"/deploy {number}", admin=True) == [
                f"🚀 Deploying pull request #{number}…"
            ]
            assert "is live: /weather answering." in await outcome(convo)

    asyncio.run(run())
    assert sql("SELECT pressed_by, grants FROM releases WHERE source = 'merge'") == [
        ("cli:ada", HELD)
    ]
    assert sql("SELECT count(*) FROM audit_log WHERE action = 'deploy.refused'") == [(2,)]


def test_a_rollback_records_what_the_release_it_goes_back_to_grants(
    settings: Settings, database: str, sql: Any
) -> None:
    async def run() -> None:
        async with persais(settings, database) as convo:
            for files in (weather(), ECHO):
                _, number, _ = await mechanic_pull(convo, settings, files)
                await say(convo, f"/deploy {number}", admin=True)
                assert "is live" in await outcome(convo)
            offer = await convo.orchestrator.handle(_inbound("/rollback"))
            assert offer[0].approval is not None
            await convo.orchestrator.press(offer[0].approval.id, "rollback", user="cli:ada",
                                           admin=True)  # fmt: skip
            assert (await outcome(convo)).startswith("↩ Rolled back: release 2 (")

    asyncio.run(run())
    rolled = sql("SELECT detail FROM audit_log WHERE action = 'release.rolled_back'")
    assert rolled == [({"to": 2, "grants": ["weather: http → api.open-meteo.com"]},)]


def _inbound(text: str) -> Any:
    from app.orchestrator.orchestrator import Inbound

    return Inbound(conversation="cli:ada", channel="terminal", user="cli:ada", user_name="ada",
                   text=text, admin=True)  # fmt: skip


def test_the_mechanics_pull_request_body_lists_what_the_change_would_grant(
    settings: Settings, database: str, tmp_path: Path, sql: Any
) -> None:
    """A job from the template alone, the template asking for `http`: the body the forge
    gets lists the grant against the release in service (none here, so it is new)."""
    templates = tmp_path / "templates"
    shutil.copytree(CHECKOUT_ROOT / "templates", templates)
    manifest = templates / "agent" / "agent.toml.j2"
    manifest.write_text(manifest.read_text().replace("permissions = []\n", "") + ASKS_HTTP)
    source = home_repository(tmp_path / "home-repo")

    async def run() -> None:
        async with open_pool(database) as pool:
            deps = JobDeps(
                forge=LocalForge(pool, settings.home, source), model=ChatModel("", "", ""),
                aider_bin=Path("aider"), aider_model=AiderModel("openai/none", "", ""),
                templates=templates, jobs_root=settings.home / "jobs",
                lock=repository_lock(pool, "persais"), progress=_quiet, use_aider=False,
                grants=granting.for_worktrees(pool, settings),
            )  # fmt: skip
            plan = template_plan("agent", "weather", "weather", "forecasts")
            outcome = await run_job("j1", "weather", deps, plan=plan)
            assert outcome.status == "opened", outcome.message

    asyncio.run(run())
    ((body,),) = sql("SELECT body FROM pull_requests")
    assert f"## Grants\n\n- {GRANT}\n\nAdding or widening a grant needs an admin's Deploy." in body


async def _quiet(stage: str) -> None:
    pass
