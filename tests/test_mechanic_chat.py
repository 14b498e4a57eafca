"""The Mechanic from the chat: `persais chat` and Telegram, the real aider-chat against a
scripted model, real git, the local forge; progress, buttons, /abort."""

from __future__ import annotations

import itertools
import json
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from app.settings import Settings
from tests.support.config import make_settings
from tests.support.fake_telegram import (
    ADA,
    BOT_ID,
    FakeTelegram,
    fake_telegram,
    press_update,
    send,
    text_update,
)
from tests.support.mechanic import PLAN, REQUEST, echo_reply
from tests.support.processes import free_port, persais, persais_env, wait_ready
from tests.support.scripted_llm import scripted_llm
from tests.support.server import client_for, running_server
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow
ECHO = [json.dumps(PLAN), echo_reply('f"Echo: {message.text}"')]


def chat(env: dict[str, str], lines: list[str]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "app", "chat", "--name", "ada"],
        input="\n".join(lines) + "\n", env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def branches(home: Path) -> str:
    bare = home / "forge" / "persais.git"
    return subprocess.run(
        ["git", "-C", str(bare), "branch", "--list", "mechanic/*"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip


def show(home: Path, branch: str, path: str) -> str:
    bare = home / "forge" / "persais.git"
    return subprocess.run(
        ["git", "-C", str(bare), "show", f"{branch}:{path}"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip


def test_persais_chat_takes_the_echo_request_to_a_pull_request_with_its_buttons(
    tmp_path: Path, database: str, sql
) -> None:
    home = tmp_path / "home"
    with scripted_llm(ECHO) as (base, _):
        env = persais_env(home, database, LLM_API_BASE=base, LLM_API_KEY="sk-chat",
                          LLM_MODEL="scripted")  # fmt: skip
        first = chat(env, ["/mechanic", REQUEST])
    assert "You are now talking to mechanic" in first
    assert "On it: job" in first
    # The progress message, polled: each stage shows as current or as done.
    for stage in ("plan", "scaffold", "code", "validate (round 1/4)"):
        assert f"⏳ {stage}" in first or f"✓ {stage}" in first, first
    assert "✓ pull request" in first
    assert "✅ Pull request #1 is open: persais pr show 1" in first
    assert "[1] Deploy  [2] Abort  [3] View PR" in first
    ((job, status, branch, attempts),) = sql("SELECT id, status, branch, attempts FROM jobs")
    assert (status, attempts) == ("opened", 1)
    assert branch == f"mechanic/echo-{job}"
    assert "Echo: {message.text}" in show(home, branch, "dynamic/agents/echo/agent.py")
    assert '"Echo: Hello"' in show(home, branch, "tests/dynamic/test_echo.py")
    assert not (home / "jobs" / job / "worktree").exists()

    # A new session: the question is offered again; View PR decides nothing; Deploy merges,
    # releases and loads Echo (the chat waits for the deploy before it leaves).
    second = chat(env, ["3", "1"])
    assert "[1] Deploy  [2] Abort  [3] View PR" in second
    assert "persais pr show 1" in second
    assert "🚀 Deploying pull request #1…" in second
    ((sha,),) = sql("SELECT sha FROM releases WHERE source = 'merge'")
    assert f"✅ release 2 ({sha[:12]}, PR #1) is live: /echo answering." in second, second
    assert sql("SELECT state FROM pull_requests") == [("merged",)]
    assert sql("SELECT status FROM jobs") == [("deployed",)]
    # A third session, a new process: it boots the release in service.
    third = chat(env, ["/echo Hello", "/releases"])
    assert "Echo: Hello" in third
    assert "▶ release 2" in third
    actions = {a for (a,) in sql("SELECT action FROM audit_log")}
    assert {"mechanic.requested", "mechanic.opened", "deploy.merged", "release.live"} <= actions
    assert "sk-chat" not in first + second + third


def test_a_vague_request_gets_one_question_and_the_answer_continues_it(
    tmp_path: Path, database: str, sql
) -> None:
    question = json.dumps({"question": "What should the agent do with a message?"})
    with scripted_llm([question, *ECHO]) as (base, llm):
        env = persais_env(tmp_path / "home", database, LLM_API_BASE=base, LLM_API_KEY="sk-q",
                          LLM_MODEL="scripted")  # fmt: skip
        asked = chat(env, ["/mechanic", "Make me an agent called Echo"])
        assert "❓ What should the agent do with a message?" in asked
        assert "Pull request" not in asked
        answered = chat(env, ["Repeat it back, prefixed with Echo:"])  # still in Mechanic mode
    assert "✅ Pull request #1 is open" in answered
    assert sql("SELECT status FROM jobs ORDER BY created_at") == [("answered",), ("opened",)]
    second_plan = str(llm.requests[1]["messages"])
    assert "Make me an agent called Echo" in second_plan
    assert "What should the agent do with a message?" in second_plan
    assert "Repeat it back, prefixed with Echo:" in second_plan


def test_a_change_to_another_agent_waits_for_the_persons_yes(
    tmp_path: Path, database: str, sql
) -> None:
    also = json.dumps({**PLAN, "also_changes": ["weather"]})
    with scripted_llm([also, ECHO[1]]) as (base, llm):
        env = persais_env(tmp_path / "home", database, LLM_API_BASE=base, LLM_API_KEY="sk-o",
                          LLM_MODEL="scripted")  # fmt: skip
        asked = chat(env, ["/mechanic", REQUEST])
        question = "❓ This change will also edit/remove agents weather — reply yes to go ahead."
        assert question in asked
        assert "Pull request" not in asked
        assert sql("SELECT count(*) FROM jobs WHERE branch IS NOT NULL") == [(0,)]
        answered = chat(env, ["yes"])
    assert "✅ Pull request #1 is open" in answered, answered
    assert sql("SELECT status FROM jobs ORDER BY created_at") == [("answered",), ("opened",)]
    assert len(llm.requests) == 2  # planned once: the yes builds the plan it answered
    (detail,) = [d for (d,) in sql("SELECT detail FROM audit_log WHERE action ="
                                   " 'mechanic.requested' ORDER BY id")][1:]  # fmt: skip
    assert detail["others_confirmed"] == ["weather"]


def test_without_a_model_the_chat_offers_the_template_alone(
    tmp_path: Path, database: str, sql
) -> None:
    env = persais_env(tmp_path / "home", database)
    out = chat(env, ["/mechanic Create an agent Greeter that says hello", "1"])
    assert "No model is configured (LLM_API_KEY)" in out
    assert "[1] Scaffold from template  [2] Cancel" in out
    assert "✅ Pull request #1 is open" in out
    assert sql("SELECT status, template_only FROM jobs") == [("opened", True)]

    vague = chat(env, ["/mechanic make it better"])
    assert "Name what to build" in vague
    assert sql("SELECT count(*) FROM jobs") == [(1,)]


# --- Telegram -------------------------------------------------------------------------------


@pytest.fixture
def telegram() -> Iterator[tuple[str, FakeTelegram]]:
    with fake_telegram(BOT_ID) as (url, fake):
        yield url, fake


def tg_settings(
    tmp_path: Path, database: str, telegram_url: str, llm_base: str, **more: str
) -> Settings:
    return make_settings(
        tmp_path / "home", database, TELEGRAM_API_URL=telegram_url,
        PERSAIS_TELEGRAM_ALLOWED_USERS=str(ADA), LLM_API_BASE=llm_base, LLM_API_KEY="sk-tg",
        LLM_MODEL="scripted", PERSAIS_AGENTS_DIR=str(tmp_path / "agents"), **more,
    )  # fmt: skip


def buttons(params: dict[str, Any]) -> list[dict[str, Any]]:
    markup = params.get("reply_markup") or {}
    return [b for row in markup.get("inline_keyboard", []) for b in row]


def with_buttons(fake: FakeTelegram) -> list[dict[str, Any]]:
    return [p for p in fake.sent() if buttons(p)]


def test_telegram_edits_one_progress_message_and_ends_with_deploy_abort_view(
    tmp_path: Path, database: str, telegram, sql
) -> None:
    url, fake = telegram
    with scripted_llm(ECHO) as (base, _):
        # The console's address: [View PR] answers with the pull request's page there.
        public = {"PERSAIS_PUBLIC_URL": "https://persais.example.org"}
        settings = tg_settings(tmp_path, database, url, base, **public)
        with running_server(settings, database) as (server, _), client_for(server) as client:
            send(client, text_update(ADA, "/mechanic"))
            send(client, text_update(ADA, REQUEST))
            (final,) = wait_for(lambda: with_buttons(fake), 240, "the pull request's buttons")
            labels = [b["text"] for b in buttons(final)]
            assert labels == ["Deploy", "Abort", "View PR"]
            assert final["text"].startswith("✅ Pull request #1 is open: persais pr show 1")

            # The progress message was sent once and edited, paced, through the stages (its
            # last edit may follow the result: new messages go first).
            def edits() -> list[str]:
                return [c.params["text"] for c in fake.calls if c.method == "editMessageText"]

            wait_for(lambda: "✓ pull request" in (edits() or [""])[-1], 10, "the last edit")
            assert len([t for t in fake.texts(ADA) if t.startswith("🔧 Mechanic job")]) == 1
            # New messages are paced a second apart, and so are edits (each their own slot: an
            # answer never waits behind a progress edit). Arrival adds the loop's jitter: CI
            # saw 0.85 s, and below 0.75 s once while the first memory index held the GIL in
            # its thread; unpaced calls would land milliseconds apart.
            for method in ("sendMessage", "editMessageText"):
                timed = [c.at for c in fake.calls if c.method == method]
                gaps = [round(b - a, 3) for a, b in itertools.pairwise(timed)]
                assert all(gap >= 0.5 for gap in gaps), (method, gaps)

            view = next(b for b in buttons(final) if b["text"] == "View PR")
            send(client, press_update(ADA, view["callback_data"], message_id=1))
            wait_for(lambda: fake.sent("answerCallbackQuery"), 30)
            answered = fake.sent("answerCallbackQuery")[0]["text"]
            assert answered == "https://persais.example.org/console/pulls/1"

            abort = next(b for b in buttons(final) if b["text"] == "Abort")
            send(client, press_update(ADA, abort["callback_data"], message_id=1))
            wait_for(lambda: any("aborted: pull request #1 closed" in t for t in fake.texts(ADA)),
                     30, "the abort's answer")  # fmt: skip
    assert sql("SELECT state FROM pull_requests") == [("closed",)]
    assert "mechanic/" not in branches(tmp_path / "home")
    assert all("sk-tg" not in str(c.params) for c in fake.calls)


def aider_processes() -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if "aider" in cmdline and "--message-file" in cmdline:
            found.append(proc)
    return found


def test_abort_mid_run_kills_aider_and_cleans_up(
    tmp_path: Path, database: str, telegram, sql
) -> None:
    url, fake = telegram
    with scripted_llm(ECHO) as (base, llm):
        llm.holds[1] = 120  # Aider's request hangs: the job sits in "code"
        settings = tg_settings(tmp_path, database, url, base)
        with running_server(settings, database) as (server, _), client_for(server) as client:
            send(client, text_update(ADA, "/mechanic " + REQUEST))
            wait_for(lambda: len(llm.requests) >= 2, 120, "Aider to ask the model")
            (job,) = sql("SELECT id FROM jobs")[0]
            assert (tmp_path / "home" / "jobs" / job / "worktree").exists()
            assert aider_processes()
            send(client, text_update(ADA, "/abort"))
            wait_for(lambda: sql("SELECT status FROM jobs") == [("aborted",)], 60, "the abort")
            wait_for(lambda: any(f"Job {job} aborted by tg:{ADA}" in t for t in fake.texts(ADA)),
                     30, "the abort to be told")  # fmt: skip
            wait_for(lambda: f"Stopping job {job}…" in fake.texts(ADA), 30, "the /abort reply")
    assert not aider_processes()
    assert not (tmp_path / "home" / "jobs" / job / "worktree").exists()
    assert "mechanic/" not in branches(tmp_path / "home")
    assert sql("SELECT count(*) FROM pull_requests") == [(0,)]


def test_a_job_survives_a_sigkill_of_its_server_and_opens_one_pull_request(
    tmp_path: Path, database: str, telegram, sql
) -> None:
    url, fake = telegram
    port = free_port()
    server, log = f"http://127.0.0.1:{port}", tmp_path / "serve.log"
    with scripted_llm(ECHO) as (base, llm):
        llm.holds[1] = 600  # the first run's Aider waits on the model until the kill
        env = persais_env(
            tmp_path / "home", database, TELEGRAM_API_URL=url,
            PERSAIS_TELEGRAM_ALLOWED_USERS=str(ADA), LLM_API_BASE=base, LLM_API_KEY="sk-kill",
            LLM_MODEL="scripted", PERSAIS_WORKER_STALLED_SECONDS="2",
            PERSAIS_AGENTS_DIR=str(tmp_path / "agents"),
        )  # fmt: skip
        with persais(["serve", "--port", str(port)], env, tmp_path, log) as first:
            wait_ready(server, first)
            with client_for(server) as client:
                send(client, text_update(ADA, "/mechanic " + REQUEST))
            wait_for(lambda: len(llm.requests) >= 2, 120, "Aider to ask the model")
            first.send_signal(signal.SIGKILL)
            first.wait()
        assert sql("SELECT status, attempts FROM jobs") == [("running", 1)]
        if shutil.which("bwrap"):  # the jail dies with its parent: no Aider left writing
            wait_for(lambda: not aider_processes(), 10, "the orphaned Aider to die")

        with persais(["serve", "--port", str(port)], env, tmp_path, log) as second:
            wait_ready(server, second)
            wait_for(lambda: with_buttons(fake), 240, "the pull request's buttons")
    assert sql("SELECT status, attempts FROM jobs") == [("opened", 2)], log.read_text()[-3000:]
    assert sql("SELECT count(*) FROM pull_requests") == [(1,)]
    edits = [c.params["text"] for c in fake.calls if c.method == "editMessageText"]
    assert any("↻ resumed after an interruption (run 2 of 3)" in text for text in edits)
    # Planned once (the plan is kept with the job); Aider asked twice.
    assert len(llm.requests) == 3, [str(r)[:200] for r in llm.requests]


SHOUT_REQUEST = "Create an agent Shout that repeats my messages in capitals"
SHOUT_PLAN = PLAN | {
    "name": "shout", "command": "shout", "description": "Repeats your messages in capitals",
    "behaviour": [{"say": "Hello", "expect": "HELLO"}],
}  # fmt: skip
SHOUT_CODE = (
    "from app.agents.base import Agent, AgentContext, Message, Reply\n\n\n"
    "class Shout(Agent):\n"
    "    async def handle(self, message: Message, ctx: AgentContext) -> Reply | str:\n"
    "        return message.text.upper()\n"
)


def test_the_mechanic_is_told_of_similar_past_jobs_and_the_lessons_for_its_paths(
    tmp_path: Path, database: str, sql
) -> None:
    shout = f"dynamic/agents/shout/agent.py\n```python\n{SHOUT_CODE}```\n"
    with scripted_llm([*ECHO, json.dumps(SHOUT_PLAN), shout]) as (base, llm):
        env = persais_env(tmp_path / "home", database, LLM_API_BASE=base, LLM_API_KEY="sk-m",
                          LLM_MODEL="scripted")  # fmt: skip
        assert "✅ Pull request #1 is open" in chat(env, [f"/mechanic {REQUEST}"])
        lessons = ["/lesson dynamic/agents/ an agent answers in one line, never more",
                   "/lesson app/review/ unrelated to agents"]  # fmt: skip
        taught = chat(env, [*lessons, f"/mechanic {SHOUT_REQUEST}"])
    assert "Lesson #1 noted for dynamic/agents/" in taught
    assert "✅ Pull request #2 is open" in taught
    assert len(llm.requests) == 4  # plan, Aider; plan, Aider
    first_plan = str(llm.requests[0]["messages"])
    assert "A similar job" not in first_plan  # nothing to remember yet
    plan, aider = str(llm.requests[2]["messages"]), str(llm.requests[3]["messages"])
    for prompt in (plan, aider):
        assert "A similar job that went well" in prompt
        assert REQUEST in prompt  # the Echo job, as the example
        assert "an agent answers in one line, never more" in prompt
        assert "unrelated to agents" not in prompt
    traces = sql("SELECT outcome, files, diff_summary FROM job_traces ORDER BY finished_at")
    assert [t[0] for t in traces] == ["opened", "opened"]
    assert "dynamic/agents/echo/agent.py" in traces[0][1]
    assert "files changed" in traces[0][2]
