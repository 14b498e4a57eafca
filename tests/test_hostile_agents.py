"""Hostile agents, run for real: every attempt of `tests/support/hostile.py` at import, in
`activate`, in `handle` (each in a sandboxed host of its own), and in a generated test under
the Mechanic's validation. The parent holds sentinel secrets (every secret variable of the
settings, a key file, a checkout's `.env`), listeners on 127.0.0.1 (TCP, UDP) and on a unix
socket, a world-writable folder outside, and a bystander process. Afterwards no sentinel is
in any reply, report, reason, traceback or log; nothing was written outside; nothing
connected; no process was started; the bystander lives.

Then what the core does about a host that misbehaves rather than escapes: protocol garbage,
a frame over the cap, a reply over the cap, a limit passed, a deadline missed, floods of
logs and of calls, and a neighbour that keeps answering within a coarse bound meanwhile.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pydantic import SecretStr

from app.agents import hosted
from app.agents.base import AgentContext, Message, as_reply
from app.agents.hosted import AgentFailed, HostedAgent, HostError
from app.agents.jail import INSIDE_AGENT, INSIDE_SDK, SDK_ROOT
from app.agents.registry import AgentSet, Registry
from app.settings import Settings
from mechanic.validate import Report, validate
from tests.support.agents import ECHO, write_agent
from tests.support.git_repos import home_repository
from tests.support.hostile import (
    ATTEMPTS,
    SPINNING_TEST,
    agent_source,
    generated_test_source,
)
from tests.support.hosts import launcher, need_bwrap
from tests.support.misbehaving import misbehaving_source

SECRET_VARIABLES = sorted(
    info.alias or name
    for name, info in Settings.model_fields.items()
    if "SecretStr" in str(info.annotation) or info.annotation is SecretStr
)


@dataclass
class World:
    """What a hostile agent would want from its parent, and the means to tell if it got any."""

    root: Path  # world-readable, so only the sandbox keeps an agent out
    sentinels: list[str]
    tcp: socket.socket
    udp: socket.socket
    unix: socket.socket
    bystander: subprocess.Popen[bytes]
    texts: list[str] = field(default_factory=list)  # everything that came back, to search

    @property
    def outside(self) -> Path:
        return self.root / "outside"

    def targets(self, *, release: str, sdk: str) -> dict[str, object]:
        return {
            "sh": "/bin/sh",
            "port": self.tcp.getsockname()[1],
            "udp": self.udp.getsockname()[1],
            "unix": self.unix.getsockname(),
            "outside": str(self.outside),
            "key_file": os.environ["GITHUB_PRIVATE_KEY_PATH"],
            "dotenv": str(self.root / "checkout" / ".env"),
            "core_pid": os.getpid(),
            "bystander": self.bystander.pid,
            "release": release,
            "sdk": sdk,
        }

    def reached(self) -> int:
        """Connections accepted and datagrams received since the start."""
        count = 0
        for listener in (self.tcp, self.unix):
            while True:
                try:
                    conn, _ = listener.accept()
                except BlockingIOError:
                    break
                conn.close()
                count += 1
        while True:
            try:
                self.udp.recv(65536)
            except BlockingIOError:
                break
            count += 1
        return count

    def assert_nothing_got_out(self, caplog: pytest.LogCaptureFixture) -> None:
        seen = "\n".join([*self.texts, caplog.text])
        leaked = [s for s in self.sentinels if s in seen]
        assert not leaked, f"secrets got out: {leaked}"
        assert "[FOUND" not in seen
        assert "[STARTED A PROCESS]" not in seen
        assert sorted(p.name for p in self.outside.iterdir()) == []
        assert self.reached() == 0
        assert self.bystander.poll() is None, "the bystander process was killed"


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    root = Path(tempfile.mkdtemp(prefix="hostile-", dir="/tmp"))  # short, for the unix socket
    root.chmod(0o755)
    sentinels = {name: f"sentinel-{name}-{secrets.token_hex(8)}" for name in SECRET_VARIABLES}
    for name, value in sentinels.items():
        monkeypatch.setenv(name, value)
    keys = root / "keys"
    keys.mkdir(mode=0o755)
    key_sentinel = f"sentinel-key-file-{secrets.token_hex(8)}"
    key = keys / "github-app.pem"
    key.write_text(
        f"-----BEGIN RSA PRIVATE KEY-----\n{key_sentinel}\n-----END RSA PRIVATE KEY-----\n"
    )
    key.chmod(0o644)
    monkeypatch.setenv("GITHUB_PRIVATE_KEY_PATH", str(key))
    checkout = root / "checkout"
    checkout.mkdir(mode=0o755)
    dotenv_sentinel = f"sentinel-dotenv-{secrets.token_hex(8)}"
    (checkout / ".env").write_text(f"LLM_API_KEY={dotenv_sentinel}\n")
    (checkout / ".env").chmod(0o644)
    (root / "outside").mkdir()
    (root / "outside").chmod(0o777)  # anyone who could see it could write it

    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen(128)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    unix = socket.socket(socket.AF_UNIX)
    unix.bind(str(root / "core.sock"))
    (root / "core.sock").chmod(0o777)
    unix.listen(128)
    for listener in (tcp, udp, unix):
        listener.setblocking(False)
    bystander = subprocess.Popen(["sleep", "600"])
    yield World(
        root, [*sentinels.values(), key_sentinel, dotenv_sentinel], tcp, udp, unix, bystander
    )
    bystander.kill()
    bystander.wait()
    for listener in (tcp, udp, unix):
        listener.close()
    shutil.rmtree(root)


def context(name: str, permissions: frozenset[str]) -> AgentContext:
    return AgentContext(name, permissions, logging.getLogger(name), {})


def message(text: str) -> Message:
    return Message(text=text, user="cli:eve", user_name="eve", conversation="cli:eve")


async def ask(agents: AgentSet, name: str, text: str) -> str:
    loaded = agents.agents[name]
    return as_reply(await loaded.agent.handle(message(text), loaded.context)).text


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def judge(lines: dict[str, str], where: str) -> None:
    """Each attempt ran and reported, and each that must fail outright did."""
    for attempt in ATTEMPTS:
        line = lines[attempt.name]
        assert line.startswith((f"{attempt.name}: did ", f"{attempt.name}: refused ")), (
            f"{where}: {line[:500]}"
        )
        if attempt.refused:
            assert line.startswith(f"{attempt.name}: refused "), f"{where}: {line[:500]}"


# --- every attempt, in a host ---------------------------------------------------------------


@pytest.mark.parametrize("placement", ["import", "activate", "handle"])
def test_no_attempt_gets_out_of_its_host(
    placement: str, world: World, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    need_bwrap()
    caplog.set_level(logging.DEBUG)
    sdk_file = SDK_ROOT / "app" / "agents" / "host.py"
    targets = world.targets(
        release=f"{INSIDE_AGENT}/agent.py", sdk=f"{INSIDE_SDK}/app/agents/host.py"
    )
    placements = () if placement == "handle" else (placement,)
    folder = write_agent(tmp_path, "hostile", agent_source(targets, placements))
    before = digest(folder / "agent.py"), digest(sdk_file)

    async def run() -> dict[str, str]:
        registry = Registry(tmp_path, [], context, launcher())
        agents = await registry.reload()
        try:
            for quarantined in agents.quarantined.values():
                world.texts += [quarantined.reason, quarantined.traceback]
            assert "hostile" in agents.agents, agents.quarantined
            verb = "run" if placement == "handle" else placement
            return {a.name: await ask(agents, "hostile", f"{verb} {a.name}") for a in ATTEMPTS}
        finally:
            await registry.close()

    lines = asyncio.run(run())
    world.texts += lines.values()
    judge(lines, placement)
    world.assert_nothing_got_out(caplog)
    assert (digest(folder / "agent.py"), digest(sdk_file)) == before


# --- every attempt, in a generated test under validation -------------------------------------


def test_no_attempt_gets_out_of_validation(
    world: World, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The generated test runs the catalogue in its own body, then loads the agent in its
    process (import, activate, handle); the load smoke imports and activates it again. A
    second change's test prints 4 MiB and never ends."""
    need_bwrap()
    caplog.set_level(logging.DEBUG)
    repo = home_repository(tmp_path / "hostile" / "repo")
    agent_py = repo / "dynamic" / "agents" / "hostile" / "agent.py"
    sdk_file = SDK_ROOT / "app" / "agents" / "host.py"
    targets = world.targets(release=str(agent_py), sdk=str(sdk_file))
    write_agent(
        repo / "dynamic" / "agents", "hostile", agent_source(targets, ("import", "activate"))
    )
    (repo / "tests" / "dynamic").mkdir(parents=True)
    (repo / "tests" / "dynamic" / "test_hostile.py").write_text(generated_test_source(targets))
    spinning = home_repository(tmp_path / "spinning" / "repo")
    write_agent(spinning / "dynamic" / "agents", "spinner", ECHO)
    (spinning / "tests" / "dynamic").mkdir(parents=True)
    (spinning / "tests" / "dynamic" / "test_spinner.py").write_text(SPINNING_TEST)
    before = digest(agent_py), digest(sdk_file)

    def changed(name: str) -> list[str]:
        return [f"dynamic/agents/{name}/agent.py", f"dynamic/agents/{name}/agent.toml",
                f"tests/dynamic/test_{name}.py"]  # fmt: skip

    async def both() -> tuple[Report, Report]:
        return await asyncio.gather(
            validate(repo, changed("hostile"), "hostile"),
            validate(spinning, changed("spinner"), "spinner", time_limit=4),
        )

    report, spun = asyncio.run(both())
    assert report.sandboxed
    world.texts += report.problems + spun.problems
    assert report.steps == {"policy": "ok", "ruff": "ok", "tests": "ok", "load": "ok"}, (
        report.problems
    )  # the lint let every attempt through: only the sandbox stood in the way
    found = list((tmp_path / "hostile").rglob("hostile-report.json"))
    assert len(found) == 1, "the generated test left no report in its scratch folder"
    report_text = found[0].read_text()
    world.texts.append(report_text)
    lines = json.loads(report_text)
    for where in ("test", "import", "activate", "run"):
        judge({a.name: lines[f"{where} {a.name}"] for a in ATTEMPTS}, f"validation {where}")
    assert spun.steps["tests"] == "failed"
    assert any("timed out" in p for p in spun.problems), spun.problems
    assert sum(len(p) for p in spun.problems) < 64 * 1024  # the 4 MiB print did not come back
    world.assert_nothing_got_out(caplog)
    assert (digest(agent_py), digest(sdk_file)) == before


# --- hosts that misbehave towards the core ---------------------------------------------------


async def fails(call: Awaitable[object]) -> str:
    """The one line the person gets for a call that failed."""
    try:
        answer = await call
    except (AgentFailed, HostError) as exc:
        text = hosted.failure_text(exc)
        assert "\n" not in text
        assert len(text) <= 300
        return text
    raise AssertionError(f"it answered: {str(answer)[:200]}")


def test_a_host_breaking_the_protocol_a_limit_or_a_deadline_is_killed_restarted_quarantined(
    world: World,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    need_bwrap()
    caplog.set_level(logging.INFO)
    monkeypatch.setattr(hosted, "LOAD_TIMEOUT", 2.0)  # also the deadline of load and activate
    write_agent(tmp_path, "echo")
    write_agent(tmp_path, "breaker", misbehaving_source())
    write_agent(tmp_path, "garbled", misbehaving_source(at_import="garbage"))
    write_agent(tmp_path, "stuck_import", misbehaving_source(at_import="spin"))
    write_agent(tmp_path, "stuck_activate", misbehaving_source(at_activate="sleep"))

    async def run() -> None:
        registry = Registry(tmp_path, [], context, launcher(timeout=1.5))
        agents = await registry.reload()
        try:
            await story(agents)
        finally:
            await registry.close()

    async def story(agents: AgentSet) -> None:
        world.texts += [f"{q.reason}\n{q.traceback}" for q in agents.quarantined.values()]
        reasons = {name: q.reason for name, q in agents.quarantined.items()}
        assert sorted(agents.agents) == ["breaker", "echo"], reasons
        assert "broke the protocol: a frame that is not JSON" in reasons["garbled"]
        assert "missed its 2 s deadline (load)" in reasons["stuck_import"]
        assert "missed its 2 s deadline (activate)" in reasons["stuck_activate"]

        loaded = agents.agents["breaker"]  # kept: quarantine takes it out of the set

        async def breaker(text: str) -> str:
            return as_reply(await loaded.agent.handle(message(text), loaded.context)).text

        async def echo_answers() -> None:
            assert await ask(agents, "echo", "still here?") == "Echo: still here?"

        first = await breaker("ok")
        # Over the caps, the call fails in one line and the host carries on.
        assert "a reply of 20000 characters (the cap is 16384)" in await fails(breaker("reply"))
        assert "over the 1048576 byte cap" in await fails(breaker("huge"))
        assert await breaker("ok") == first
        # Garbage on the protocol: killed; the next call starts a new host at once.
        assert "broke the protocol: a frame that is not JSON" in await fails(breaker("garbage"))
        await echo_answers()
        second = await breaker("ok")
        assert second != first
        # A frame over the cap: killed; the next restart waits a second.
        assert "a frame over the 1048576 byte cap" in await fails(breaker("frame"))
        await echo_answers()
        assert "restarting after a crash; try again in 1 s" in await fails(breaker("ok"))
        await asyncio.sleep(1.1)
        assert await breaker("ok") not in (first, second)
        # Past its CPU limit: the kernel ends it; a third crash quarantines the agent.
        assert "exited" in await fails(breaker("cpu"))
        await echo_answers()
        assert "breaker" not in agents.agents
        reason = agents.quarantined["breaker"].reason
        assert reason.startswith("its host failed 3 times in 5 min (last: exited"), reason
        assert (await fails(breaker("ok"))).startswith("quarantined: its host failed 3 times")
        world.texts.append(reason)

    asyncio.run(run())
    world.assert_nothing_got_out(caplog)


# polite-calls reads its answers between bursts of calls for a second: only its neighbour's
# time is judged (its own answer waits behind its flood, and may miss its deadline).
HOGS = ("spin", "balloon", "logs", "calls", "polite-calls")


def test_a_neighbour_keeps_answering_while_a_host_spins_balloons_or_floods_the_core(
    world: World, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A coarse sanity bound, not a performance figure (those are in bench/agents.py): the
    neighbour answers each message within a second while another host spins to its
    deadline, fills its memory, or floods its log or the core with capability calls (in the
    background, once its call is answered, so that no deadline ends it)."""
    need_bwrap()
    caplog.set_level(logging.INFO)
    write_agent(tmp_path, "echo")
    for hog in HOGS:
        write_agent(tmp_path, hog.replace("-", "_"), misbehaving_source())

    async def run() -> dict[str, tuple[float, object]]:
        registry = Registry(tmp_path, [], context, launcher(timeout=2))
        agents = await registry.reload()
        try:
            assert not agents.quarantined, agents.quarantined
            alone, _ = await neighbour(agents, asyncio.sleep(0.5))
            assert alone < 0.5, f"the neighbour alone took {alone:.2f} s"
            seen = {}
            for hog in HOGS:
                name = hog.replace("-", "_")
                meanwhile = answer(agents, name, hog)
                if hog == "logs":  # muted and read slowly: its own writes block
                    meanwhile = flooding(agents, name, meanwhile, patience=1.5)
                if hog == "calls":  # the answers it does not read pile up, to a cap
                    meanwhile = flooding(agents, name, meanwhile, patience=10)
                seen[hog] = await neighbour(agents, meanwhile)
            assert (await ask(agents, "spin", "ok")).startswith("ok ")  # started again
            return seen
        finally:
            await registry.close()

    seen = asyncio.run(run())
    for hog, (worst, _) in seen.items():
        assert worst < 1.0, f"the neighbour took {worst:.2f} s to answer while a host did {hog}"
    outcomes = {hog: str(outcome) for hog, (_, outcome) in seen.items()}
    assert outcomes["spin"] == "missed its 2 s deadline (handle)"
    assert outcomes["balloon"].startswith("held "), outcomes["balloon"]
    assert int(outcomes["balloon"].split()[1]) < 256  # its address space is capped
    logs, _, busy = outcomes["logs"].partition(", the core ")
    assert logs == "flooding its log; alive after 1.5 s"
    assert int(busy.removesuffix("% busy")) < 20, busy  # muted, it is read slowly: it waits
    assert "host of logs logs too much; the rest is dropped" in caplog.text
    assert outcomes["calls"] == (
        "flooding the core with calls; killed: broke the protocol:"
        " it does not read what the core sends (over 4 MiB unread)"
    )
    world.texts += outcomes.values()
    world.assert_nothing_got_out(caplog)


async def flooding(agents: AgentSet, name: str, answered: Awaitable[str], patience: float) -> str:
    """`answered` (the hog's reply), then what became of its host within `patience` seconds
    of flooding; one still alive then is killed here."""
    reply = await answered
    agent = agents.agents[name].agent
    assert isinstance(agent, HostedAgent)
    assert agent.host is not None
    host = agent.host
    started, cpu = time.monotonic(), time.thread_time()
    try:
        await asyncio.wait_for(host.ended.wait(), patience)
    except TimeoutError:
        share = (time.thread_time() - cpu) / (time.monotonic() - started)
        host.kill("the test is done with it")
        await host.ended.wait()
        return f"{reply}; alive after {patience:.1f} s, the core {share:.0%} busy"
    return f"{reply}; killed: {host.death}"


async def answer(agents: AgentSet, name: str, text: str) -> str:
    """The reply, or the one line the person gets when it fails."""
    try:
        return await ask(agents, name, text)
    except (AgentFailed, HostError) as exc:
        return hosted.failure_text(exc)


async def neighbour(agents: AgentSet, meanwhile: Awaitable[object]) -> tuple[float, object]:
    """Ask the echo agent every 50 ms until `meanwhile` is done: the slowest answer's time,
    and what `meanwhile` gave."""
    pending = asyncio.ensure_future(meanwhile)
    worst = 0.0
    while True:
        started = time.monotonic()
        assert await ask(agents, "echo", "ping") == "Echo: ping"
        worst = max(worst, time.monotonic() - started)
        if pending.done():
            return worst, pending.result()
        await asyncio.sleep(0.05)
