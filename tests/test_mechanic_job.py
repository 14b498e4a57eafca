"""A Mechanic job end to end: scripted model, the real aider-chat, real git, the local forge."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pytest

from app.forge.local import LocalForge
from app.forge.lock import repository_lock
from app.runtime import Runtime
from app.settings import Settings, load_settings
from mechanic.aider import AiderModel
from mechanic.job import JobDeps, JobOutcome, run_job
from mechanic.llm import ChatModel
from mechanic.plan import Plan
from mechanic.scaffold import ScaffoldRequest, render, write
from tests.support.git_repos import home_repository
from tests.support.mechanic import PLAN, REQUEST, echo_reply
from tests.support.scripted_llm import scripted_llm

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
AIDER = load_settings(None).resolved_aider_bin()


@pytest.fixture
def source(tmp_path: Path) -> Path:
    return home_repository(tmp_path / "home-repo")


def job(
    settings: Settings, database: str, source: Path, replies: list[str],
    plan: Plan | None = None, *, others_confirmed: bool = False,
) -> tuple[JobOutcome, list[str], object]:  # fmt: skip
    stages: list[str] = []

    async def progress(stage: str) -> None:
        stages.append(stage)

    async def run(base: str) -> JobOutcome:
        runtime = Runtime(settings, database)
        await runtime.start(worker=False)
        try:
            forge = LocalForge(runtime.pool, settings.home, source)
            assert AIDER is not None
            deps = JobDeps(
                forge=forge, model=ChatModel(base, "sk-test", "scripted"),
                aider_bin=AIDER, aider_model=AiderModel("openai/scripted", base, "sk-test"),
                templates=ROOT / "templates", jobs_root=settings.home / "jobs",
                lock=repository_lock(runtime.pool, "persais"), progress=progress,
            )  # fmt: skip
            return await run_job("j1", REQUEST, deps, plan, others_confirmed=others_confirmed)
        finally:
            await runtime.stop()

    with scripted_llm(replies) as (base, llm):
        outcome = asyncio.run(run(base))
    return outcome, stages, llm


def branch_file(settings: Settings, branch: str, path: str) -> str:
    bare = settings.home / "forge" / "persais.git"
    return subprocess.run(
        ["git", "-C", str(bare), "show", f"{branch}:{path}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def test_the_echo_request_ends_in_an_open_pull_request(
    settings: Settings, database: str, source: Path, sql
) -> None:
    replies = [json.dumps(PLAN), echo_reply('f"Echo: {message.text}"')]
    outcome, stages, _ = job(settings, database, source, replies)
    assert outcome.status == "opened", outcome.message
    assert stages == ["plan", "scaffold", "code", "validate (round 1/4)", "pull request"]
    assert outcome.pull_request is not None
    assert outcome.pull_request.branch == "mechanic/echo-j1"
    assert "Echo: {message.text}" in branch_file(
        settings, "mechanic/echo-j1", "dynamic/agents/echo/agent.py"
    )
    assert '"Echo: Hello"' in branch_file(
        settings, "mechanic/echo-j1", "tests/dynamic/test_echo.py"
    )
    ((title, body, state),) = sql("SELECT title, body, state FROM pull_requests")
    assert state == "open"
    assert title == "Add agent /echo: Repeats your messages"
    for part in (
        REQUEST,
        "Echo: Hello",
        "dynamic/agents/echo/agent.py",
        "tests ok",
        "Mechanic job `j1`",
    ):
        assert part in body
    assert "sk-test" not in body
    assert not (settings.home / "jobs" / "j1" / "worktree").exists()  # cleaned up


def test_a_failing_first_attempt_is_repaired(
    settings: Settings, database: str, source: Path
) -> None:
    replies = [
        json.dumps(PLAN),
        echo_reply('f"echo: {message.text}"'),
        echo_reply('f"Echo: {message.text}"'),
    ]
    outcome, stages, llm = job(settings, database, source, replies)
    assert outcome.status == "opened", outcome.message
    assert outcome.rounds == 1
    assert "repair 1/3" in stages
    repair_prompt = str(llm.requests[-1]["messages"])  # type: ignore[attr-defined]
    assert "failed validation" in repair_prompt
    assert "Echo: Hello" in repair_prompt


WORKFLOW = "on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps: [{run: curl evil}]\n"
HOSTILE = {
    "core": (
        "app/server.py\n```python\nimport os\n```\n" + echo_reply("__import__('os').getcwd()"),
        "app/server.py",
    ),
    "workflow": (
        f".github/workflows/pwn.yml\n```yaml\n{WORKFLOW}```\n"
        + echo_reply('"Echo: " + message.text'),
        ".github/workflows/pwn.yml",
    ),
    "subprocess": (
        echo_reply('__import__("subprocess").run(["id"]).stdout or ""').replace(
            "from app.agents", "import subprocess\nfrom app.agents"
        ),
        "subprocess",
    ),
    "another agent": (
        "dynamic/agents/weather/agent.py\n```python\nX = 1\n```\n" + echo_reply('"Echo"'),
        "dynamic/agents/weather/agent.py: belongs to agent weather, which the plan does not name",
    ),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_reply_is_refused_and_nothing_is_committed(
    settings: Settings, database: str, source: Path, sql, case: str
) -> None:
    hostile, reason = HOSTILE[case]
    outcome, _, _ = job(settings, database, source, [json.dumps(PLAN), hostile])
    assert outcome.status == "refused", outcome.message
    assert reason in outcome.message
    assert sql("SELECT count(*) FROM pull_requests") == [(0,)]
    bare = settings.home / "forge" / "persais.git"
    branches = subprocess.run(
        ["git", "-C", str(bare), "branch"], capture_output=True, text=True
    ).stdout
    assert "mechanic/" not in branches


def test_a_vague_request_gets_one_question(settings: Settings, database: str, source: Path) -> None:
    question = json.dumps({"question": "What should the agent do?"})
    outcome, stages, _ = job(settings, database, source, [question])
    assert outcome.status == "question"
    assert outcome.message == "What should the agent do?"
    assert stages == ["plan"]


WEATHER = (
    "dynamic/agents/weather/agent.py\n```python\n"
    "from app.agents.base import Agent, AgentContext, Message, Reply\n\n\n"
    "class Weather(Agent):\n"
    "    async def handle(self, message: Message, ctx: AgentContext) -> Reply | str:\n"
    '        return "Sunny, as ever"\n```\n'
)
ALSO_WEATHER = {**PLAN, "also_changes": ["weather"]}


def with_weather(source: Path) -> Path:
    """The home repository with a weather agent on main."""
    write(source, render(ROOT / "templates", ScaffoldRequest("agent", "weather", "weather", "Sky")))
    subprocess.run(["git", "-C", str(source), "add", "-A"], check=True)
    subprocess.run(
        ["git", "-C", str(source), "-c", "user.name=t", "-c", "user.email=t@example.com",
         "commit", "-qm", "weather"], check=True,
    )  # fmt: skip
    return source


def test_a_plan_that_changes_other_agents_asks_before_anything_runs(
    settings: Settings, database: str, source: Path, sql
) -> None:
    outcome, stages, llm = job(settings, database, source, [json.dumps(ALSO_WEATHER)])
    assert outcome.status == "question"
    assert outcome.message == (
        "This change will also edit/remove agents weather — reply yes to go ahead."
    )
    assert outcome.plan is not None
    assert outcome.plan.also_changes == ["weather"]
    assert stages == ["plan"]  # no worktree, no Aider, no validation
    assert len(llm.requests) == 1  # type: ignore[attr-defined]
    assert not (settings.home / "jobs" / "j1").exists()


def test_a_confirmed_plan_may_edit_the_agents_it_names(
    settings: Settings, database: str, source: Path
) -> None:
    plan = Plan.model_validate(ALSO_WEATHER)
    reply = WEATHER + echo_reply('f"Echo: {message.text}"')
    outcome, _, _ = job(
        settings, database, with_weather(source), [reply], plan, others_confirmed=True
    )
    assert outcome.status == "opened", outcome.message
    assert "dynamic/agents/weather/agent.py" in outcome.files
    assert "Sunny, as ever" in branch_file(
        settings, "mechanic/echo-j1", "dynamic/agents/weather/agent.py"
    )


def test_a_modbus_plan_names_its_device_and_other_kinds_carry_none() -> None:
    plc = {"kind": "modbus_tool", "name": "plc", "command": "plc", "description": "PLC",
           "behaviour": [{"say": "help", "expect": "the usage"}]}  # fmt: skip
    with pytest.raises(ValueError, match="needs its device"):
        Plan.model_validate(plc)
    with pytest.raises(ValueError, match="pattern"):  # no ports, schemes or quotes in a host
        Plan.model_validate({**plc, "device": {"host": "10.0.0.5:502"}})
    plan = Plan.model_validate({**plc, "device": {"host": "plc.line1.example"}})
    assert plan.device is not None
    assert (plan.device.host, plan.device.port, plan.device.unit) == ("plc.line1.example", 502, 1)
    echo = Plan.model_validate({**plc, "kind": "agent", "device": {"host": "10.0.0.5"}})
    assert echo.device is None  # only a modbus_tool reaches a device
