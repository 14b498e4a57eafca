"""`persais chat`: the same orchestrator over stdin/stdout, buttons as numbered choices."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from app.settings import Settings
from tests.support.agents import write_agent
from tests.support.conversation import ASKER
from tests.support.processes import persais_env
from tests.support.server import running_server
from tests.support.terminal import Terminal

pytestmark = pytest.mark.slow


def chat(env: dict[str, str], lines: list[str], name: str = "ada") -> str:
    done = subprocess.run(
        [sys.executable, "-m", "app", "chat", "--name", name],
        input="\n".join(lines) + "\n", env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_terminal_drives_modes_and_approvals_across_restarts(
    tmp_path: Path, database: str, settings: Settings, sql
) -> None:
    agents = tmp_path / "agents"
    write_agent(agents, "echo")
    write_agent(agents, "asker", ASKER)
    write_agent(agents, "broken", "import definitely_not_installed\n")
    env = persais_env(tmp_path / "home", database, PERSAIS_AGENTS_DIR=str(agents))

    first = chat(env, ["/echo", "hello", "/asker v3", "/agents"])
    assert "Echo: hello" in first
    assert "Ship v3?\n  [1] Ship it  [2] Not now" in first
    assert "broken: ModuleNotFoundError" in first

    second = chat(env, ["still in echo mode", "1"])  # a new process: mode and question kept
    assert "Echo: still in echo mode" in second
    assert "Ship v3?\n  [1] Ship it  [2] Not now" in second  # offered again
    assert "Ship it — noted." in second
    assert "ship:v3 -> shipped" in second

    # The conversation shows in /status of the running server's database.
    with running_server(settings, database) as (url, _):
        status = chat(env, ["/status"], name="bob")
        ready = httpx.get(f"{url}/ready").json()
    assert "cli:ada (" in status
    assert sql("SELECT status FROM approvals") == [("decided",)]
    assert {a["name"] for a in ready["agents"]["loaded"] or []} >= {"help", "status"}


SLOW = """
import asyncio

from app.agents.base import Agent, AgentContext, Message, Reply


class Slow(Agent):
    async def handle(self, message: Message, ctx: AgentContext) -> Reply | str:
        await asyncio.sleep(60)
        return "slow: done"
"""


def tty_chat(env: dict[str, str], *python: str) -> Terminal:
    """`persais chat --name ada` at a keyboard; `python`: what runs instead of `-m app`."""
    argv = [sys.executable, *(python or ["-m", "app"]), "chat", "--name", "ada"]
    return Terminal(argv, env)


@pytest.fixture
def chat_env(tmp_path: Path, database: str) -> dict[str, str]:
    agents = tmp_path / "agents"
    write_agent(agents, "echo")
    write_agent(agents, "asker", ASKER)
    write_agent(agents, "slow", SLOW)
    return persais_env(tmp_path / "home", database, PERSAIS_AGENTS_DIR=str(agents))


def test_a_terminal_edits_the_line_keeps_history_and_leaves_on_ctrl_d_and_ctrl_c(
    tmp_path: Path, chat_env: dict[str, str]
) -> None:
    term = tty_chat(chat_env)
    try:
        at = term.expect(">", after=term.expect("Ctrl-D leaves."))
        term.type("/echo", "enter")
        at = term.expect(">", after=term.expect("You are now talking to echo", after=at))
        term.type("hello wrld", "left", "left", "left", "o", "enter")  # fixed in place
        at = term.expect(">", after=term.expect("Echo: hello world", after=at))
        term.type("up", "enter")  # the line before, again (its answer is the second one)
        at = term.expect("Echo: hello world", after=at)
        term.expect(">", after=at)
        term.type("ctrl-d")
        assert term.wait() == 0
        assert term.screen[at:].strip().endswith("Bye.")
        assert "[D" not in term.screen
        assert "Traceback" not in term.screen
    finally:
        term.close()
    history = (tmp_path / "home" / "chat_history").read_text()
    assert (tmp_path / "home" / "chat_history").stat().st_mode & 0o777 == 0o600
    assert "+hello world" in history
    assert "+/echo" in history

    again = tty_chat(chat_env)  # a new process remembers what was typed
    try:
        at = again.expect(">", after=again.expect("Ctrl-D leaves."))
        again.type("up", "enter")
        at = again.expect("Echo: hello world", after=at)
        again.expect(">", after=at)
        again.type("half a line", "ctrl-c")
        assert again.wait() == 0
        tail = again.screen[at:]
        assert tail.count("Left the chat.") == 1
        assert "Traceback" not in tail
        assert "Echo: half a line" not in tail
    finally:
        again.close()


def test_buttons_are_a_menu_for_the_arrow_keys_and_later_output_keeps_the_line(
    chat_env: dict[str, str], sql
) -> None:
    term = tty_chat(chat_env)
    try:
        at = term.expect(">", after=term.expect("Ctrl-D leaves."))
        term.type("/asker v3", "enter")
        at = term.expect("[1] Ship it  [2] Not now", after=at)
        term.expect(">", after=at)
        term.type("down")  # the menu opens on the first button
        at = term.expect("[2] Not now", after=term.expect("[1] Ship it", after=at))
        term.type("down", "enter")  # the second: Not now
        at = term.expect("ship:v3 -> held", after=at)
        term.expect(">", after=at)
        assert sql("SELECT status FROM approvals") == [("decided",)]

        # A worker speaks while a line is half typed: it shows above, the line stays.
        term.expect(">", after=at)
        term.type("/echo", "enter")
        at = term.expect("You are now talking to echo", after=at)
        term.expect(">", after=at)
        term.type("half typed")
        sql(
            "INSERT INTO outbox (conversation, text) VALUES (%s, %s)",
            "cli:ada",
            "Job 7: tests pass",
        )
        at = term.expect("Job 7: tests pass", after=at)
        term.expect("> half typed", after=at)  # the prompt drawn again below, with the line
        term.type(" and finished", "enter")
        term.expect(">", after=term.expect("Echo: half typed and finished", after=at))
        term.type("ctrl-d")
        assert term.wait() == 0
    finally:
        term.close()


def test_ctrl_c_during_a_turn_leaves_with_one_line(chat_env: dict[str, str]) -> None:
    term = tty_chat(chat_env)
    try:
        at = term.expect(">", after=term.expect("Ctrl-D leaves."))
        term.type("/slow", "enter")
        at = term.expect("You are now talking to slow", after=at)
        term.expect(">", after=at)
        term.type("take your time", "enter")
        time.sleep(2)  # the agent is at work: no prompt, the terminal's own Ctrl-C
        term.type("ctrl-c")
        assert term.wait(30) == 130
        tail = term.screen[at:]
        assert tail.count("Left the chat.") == 1
        assert "Traceback" not in term.screen
        assert "slow: done" not in tail
    finally:
        term.close()


def test_without_prompt_toolkit_readline_edits_keeps_history_and_redraws(
    tmp_path: Path, chat_env: dict[str, str], sql
) -> None:
    no_toolkit = ["-c", "import sys; sys.modules['prompt_toolkit'] = None; "
                  "from app.cli import main; main()"]  # fmt: skip
    term = tty_chat(chat_env, *no_toolkit)
    try:
        at = term.expect(">", after=term.expect("Ctrl-D leaves."))
        term.type("/echo", "enter")
        at = term.expect("You are now talking to echo", after=at)
        term.expect(">", after=at)
        term.type("hello wrld", "left", "left", "left", "o", "enter")
        at = term.expect("Echo: hello world", after=at)
        term.expect(">", after=at)
        term.type("up", "enter")
        at = term.expect("Echo: hello world", after=at)
        term.expect(">", after=at)
        term.type("ctrl-d")
        assert term.wait() == 0
        assert term.screen[at:].strip().endswith("Bye.")
        assert "[D" not in term.screen
        assert "Traceback" not in term.screen
    finally:
        term.close()
    assert "hello world" in (tmp_path / "home" / "chat_history").read_text()

    again = tty_chat(chat_env, *no_toolkit)  # history kept; output redraws the line
    try:
        at = again.expect(">", after=again.expect("Ctrl-D leaves."))
        again.type("up", "enter")
        at = again.expect("Echo: hello world", after=at)
        again.expect(">", after=at)
        again.type("half typed")
        sql(
            "INSERT INTO outbox (conversation, text) VALUES (%s, %s)",
            "cli:ada",
            "Job 7: tests pass",
        )
        at = again.expect("> half typed", after=again.expect("Job 7: tests pass", after=at))
        again.type("ctrl-c")
        assert again.wait() == 130
        assert again.screen[at:].count("Left the chat.") == 1
        assert "Traceback" not in again.screen
    finally:
        again.close()
