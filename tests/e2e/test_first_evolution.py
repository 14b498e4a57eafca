"""The first evolution, as a person lives it: Persais asked in Telegram (and on GitHub) to
build an agent, its pull request reviewed, deployed onto the Fly machines, and answering.

`persais serve` is a real process on the embedded Postgres, configured only through its
environment; GitHub, Telegram, Fly and the model are the local fakes (`tests/support/stack`).
The tests touch Persais only through `/webhooks/telegram` and `/webhooks/github`: the fake
GitHub delivers the App's webhooks itself, as GitHub does, and Fly's update of the serve
process's own machine stops it and starts it again on the release.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from app.agents.testing import modbus_server
from tests.support.fake_github import BOT_LOGIN
from tests.support.fake_telegram import ADA, press_update, text_update
from tests.support.mechanic import PLAN, echo_reply
from tests.support.processes import free_port
from tests.support.stack import ADA_LOGIN, HOME_REPO, Stack, buttons, pick, stack
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow

ECHO_REQUEST = "Create an agent Echo that repeats the user's messages"
REVIEW = json.dumps({"summary": "A small, tested agent.", "findings": []})
# The model's part: the plan, Aider's edit, then the review of the pull request (twice: a
# review cut short by a kill runs again).
ECHO_SCRIPT = [json.dumps(PLAN), echo_reply('f"Echo: {message.text}"'), REVIEW, REVIEW]


def mechanic_pull(s: Stack) -> Any:
    pulls = [p for (full, _), p in s.github.pulls.items()
             if full == HOME_REPO and p.head.startswith("mechanic/")]  # fmt: skip
    return pulls[0] if pulls else None


def green(s: Stack, head: str, conclusion: str = "success") -> bool:
    runs = [r for r in s.github.check_runs if r["head_sha"] == head]
    return bool(runs) and all(r["conclusion"] == conclusion for r in runs)


def deploy_offer(s: Stack) -> tuple[dict[str, Any], dict[str, Any]]:
    """The job's result, and the one [Deploy] for its pull request in Ada's chat — also the
    admin chat, so it is on the result or on the admin notice, whichever asked first."""
    (result,) = wait_for(
        lambda: [p for p in s.telegram.sent() if p["text"].startswith("✅ Pull request #")],
        300, "the job's result",
    )  # fmt: skip
    (notice,) = wait_for(
        lambda: [p for p in s.telegram.sent() if "\nMechanic job " in p["text"]],
        120, "the admin notice of the pull request",
    )  # fmt: skip
    offers = [p for p in (result, notice) if "Deploy" in [b["text"] for b in buttons(p)]]
    assert len(offers) == 1, "one [Deploy] per pull request per chat"
    return result, offers[0]


def assert_pull_holds_the_agent(s: Stack, pull: Any, agent: str) -> None:
    git = s.github.repos[HOME_REPO].git
    for path in (f"dynamic/agents/{agent}/agent.py", f"dynamic/agents/{agent}/agent.toml",
                 f"tests/dynamic/test_{agent}.py"):  # fmt: skip
        assert git.blob(pull.head_sha, path) is not None, path


def assert_reviewed(s: Stack, pull: Any, conclusion: str = "success") -> None:
    wait_for(lambda: green(s, pull.head_sha, conclusion), 120, f"the review's check {conclusion}")
    wait_for(lambda: any(r["commit_id"] == pull.head_sha for r in s.github.reviews), 30,
             "the review on the pull request")  # fmt: skip
    review = next(r for r in s.github.reviews if r["commit_id"] == pull.head_sha)
    assert review["user"]["login"] == BOT_LOGIN


def assert_no_secret_leaked(s: Stack) -> None:
    told = [json.dumps(c.params) for c in s.telegram.calls]
    written = [json.dumps(c) for c in s.github.issue_comments + s.github.reviews]
    for secret in s.secrets_used:
        for text in told + written:
            assert secret not in text
        assert secret not in s.server.tail(10**7)


def assert_one_release_on_every_machine(s: Stack, agent: str) -> str:
    releases = s.sql("SELECT id, sha FROM releases WHERE source = 'merge'")
    assert len(releases) == 1, releases
    ((_, sha),) = releases
    assert s.fly is not None
    for machine in s.fly.machines.values():
        assert s.fly.env(machine.id)["PERSAIS_RELEASE"] == sha, machine.name
        assert machine.state == "started"
    worker = next(m for m in s.fly.machines.values() if m.process is None)
    assert agent in [a["name"] for a in worker.ready["agents"]["loaded"]]
    assert len(s.github.merges) == 1
    assert s.fly.rate_limited == []
    return str(sha)


def test_echo_from_telegram_survives_a_kill_and_deploys_onto_the_fly_machines(
    tmp_path: Path,
) -> None:
    with stack(tmp_path, ECHO_SCRIPT) as s:
        s.tell(text_update(ADA, "/mechanic"))
        s.tell(text_update(ADA, ECHO_REQUEST))
        result, offer = deploy_offer(s)
        pull = mechanic_pull(s)
        assert result["text"].startswith(f"✅ Pull request #{pull.number} is open: ")
        # One progress message, edited through the stages (its last edit may follow).
        s.wait_said("✓ pull request", 30)
        progress = [t for t in s.said() if t.startswith("🔧 Mechanic job")]
        assert any("✓ validate" in t for t in progress)
        assert len([c for c in s.telegram.sent() if c["text"].startswith("🔧")]) == 1
        assert_pull_holds_the_agent(s, pull, "echo")

        # The server dies (SIGKILL) with the pull request open, maybe mid-review; Fly
        # starts the machine again.
        s.server.kill()
        s.server.start()
        s.server.wait_ready()
        assert_reviewed(s, pull)

        # [Deploy] on the message sent before the kill.
        s.tell(press_update(ADA, pick(offer, "Deploy")))
        live = s.wait_said("is live", 240)
        sha = assert_one_release_on_every_machine(s, "echo")
        assert live == f"✅ release 2 ({sha[:12]}, PR #{pull.number}) is live: /echo answering."
        # Fly stopped the serve process and started it on the release; that process finished
        # the deploy (the handoff).
        assert s.server.starts[-1] == {"PERSAIS_RELEASE": sha}
        s.wait_said("(this one) is restarting on the release")

        s.tell(text_update(ADA, "/echo Hello World"))
        s.wait_said("Echo: Hello World", 60)

        actions = {a for (a,) in s.sql("SELECT action FROM audit_log")}
        assert {"mechanic.opened", "deploy.merged", "deploy.handed_off", "release.live"} <= actions
        assert s.sql("SELECT status FROM jobs") == [("deployed",)]
        assert s.github.pulls[(HOME_REPO, pull.number)].state == "closed"
        assert_no_secret_leaked(s)


def test_echo_asked_in_a_github_comment_is_deployed_from_the_telegram_notice(
    tmp_path: Path,
) -> None:
    with stack(tmp_path, ECHO_SCRIPT) as s:
        issue = s.github.open_issue(HOME_REPO)
        asked = s.github.comment(HOME_REPO, issue, f"/mechanic {ECHO_REQUEST}", user=ADA_LOGIN,
                                 on_pull=False)  # fmt: skip
        pull = wait_for(lambda: mechanic_pull(s), 300, "the Mechanic's pull request")
        assert_pull_holds_the_agent(s, pull, "echo")

        def thread() -> list[str]:
            return [c["body"] for c in s.github.issue_comments if c["_number"] == issue]

        wait_for(lambda: any(f"/pull/{pull.number}" in b for b in thread()), 60,
                 "the result in the issue's thread")  # fmt: skip
        assert [r["content"] for r in s.github.reactions
                if r["_comment_id"] == asked["comment"]["id"]] == ["eyes"]  # fmt: skip
        assert_reviewed(s, pull)

        # The admin chat heard of the new pull request, with [Deploy].
        (notice,) = wait_for(lambda: s.with_buttons(["Deploy", "View PR"]), 60,
                             "[Deploy] [View PR] in the admin chat")  # fmt: skip
        assert f"{HOME_REPO}#{pull.number}" in notice["text"]
        assert notice["text"].endswith("\ngrants: none new")  # Echo asks for nothing
        s.tell(press_update(ADA, pick(notice, "Deploy")))
        live = s.wait_said("is live", 240)
        sha = assert_one_release_on_every_machine(s, "echo")
        assert f"release 2 ({sha[:12]}, PR #{pull.number}) is live: /echo answering." in live

        s.tell(text_update(ADA, "/echo Hello World"))
        s.wait_said("Echo: Hello World", 60)
        assert_no_secret_leaked(s)


# --- the PLC agent --------------------------------------------------------------------------

PLC_REQUEST = (
    "Create an agent plc that reads holding registers from the Modbus TCP device at"
    " 127.0.0.1:{port}"
)


def plc_script(port: int) -> list[str]:
    plan = {
        "kind": "modbus_tool", "name": "plc", "command": "plc",
        "description": "Reads holding registers from a Modbus TCP device",
        "behaviour": [{"say": "help", "expect": "the usage"}],
        "device": {"host": "127.0.0.1", "port": port, "unit": 1}, "question": None,
    }  # fmt: skip
    return [json.dumps(plan), "The scaffold already does what the plan asks.", REVIEW, REVIEW]


@contextmanager
def plc_device(values: list[int], at: int = 0) -> Iterator[int]:
    """A pymodbus TCP server on loopback, on a loop in a thread of its own; yields its port."""
    loop = asyncio.new_event_loop()
    started, port = threading.Event(), [0]
    stop = asyncio.Event()

    async def serve() -> None:
        async with modbus_server(values, port=at) as p:
            port[0] = p
            started.set()
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert started.wait(10), "the Modbus server did not start"
    try:
        yield port[0]
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()


def test_a_plc_agent_from_the_modbus_template_reads_a_device_and_says_when_it_is_down(
    tmp_path: Path,
) -> None:
    port = free_port()
    with stack(tmp_path, plc_script(port), on_fly=False) as s:
        s.tell(text_update(ADA, f"/mechanic {PLC_REQUEST.format(port=port)}"))
        _, offer = deploy_offer(s)
        pull = mechanic_pull(s)
        assert_pull_holds_the_agent(s, pull, "plc")
        git = s.github.repos[HOME_REPO].git
        agent = git.blob(pull.head_sha, "dynamic/agents/plc/agent.py")
        assert agent is not None
        assert b'capability("modbus")' in agent[1]  # the core reads the PLC, not the agent
        manifest = git.blob(pull.head_sha, "dynamic/agents/plc/agent.toml")
        assert manifest is not None
        assert f"port = {port}".encode() in manifest[1]  # the device is in the grant
        # A new grant is a warning on the manifest's lines: the check is neutral, not failed.
        assert_reviewed(s, pull, "neutral")
        comments = [c["body"] for r in s.github.reviews for c in r.get("comments", [])]
        assert any("modbus" in body and "new" in body for body in comments), comments

        s.tell(press_update(ADA, pick(offer, "Deploy")))  # Ada is an admin: she may grant
        live = s.wait_said("is live", 120)
        assert "is live: /plc answering.\n🔑 granted plc: modbus → plc 127.0.0.1:" in live

        with plc_device([7, 1, 2026, 42], at=port):
            s.tell(text_update(ADA, "/plc read 0 4"))
            s.wait_said("Registers 0..3 on plc: 7, 1, 2026, 42", 60)
        # The device is gone: a clear answer, and everything else still answers.
        s.tell(text_update(ADA, "/plc read 0 4"))
        s.wait_said("PLC plc is not reachable", 60)
        s.tell(text_update(ADA, "/plc read nonsense"))
        s.wait_said("Usage: /plc read <address> [count]", 30)
        with plc_device([5, 6], at=port):
            s.tell(text_update(ADA, "/plc read 1"))
            s.wait_said("Registers 1..1 on plc: 6", 60)
        s.tell(text_update(ADA, "/agents"))
        s.wait_said("plc", 30)
        assert s.sql("SELECT count(*) FROM releases WHERE source = 'merge'") == [(1,)]
        assert_no_secret_leaked(s)
