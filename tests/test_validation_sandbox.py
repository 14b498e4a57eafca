"""The Mechanic's validation, tried as a hostile change would try it: real git worktrees, real
bubblewrap, real processes.

A hostile generated test here passes the code lint: it reaches sockets, processes and files
through attributes of modules it may import (`logging.os`, `asyncio.base_events.socket`), as
the attacks in issue 16 did, so only the sandbox stands in its way. It ends by failing on
purpose with what it saw (`SEEN {...}`), so the report carries it back to us.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
import socket
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mechanic.policy import MAX_CHANGE_BYTES, MAX_FILE_BYTES, MAX_FILES
from mechanic.scaffold import ScaffoldRequest, render, write
from mechanic.validate import Report, validate
from mechanic.workspace import Workspace
from tests.support.git_repos import home_repository
from tests.support.hosts import need_bwrap

pytestmark = pytest.mark.slow
TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
SENTINEL = "sentinel-" + secrets.token_hex(8)
SECRET_VARIABLES = ("LLM_API_KEY", "PERSAIS_GITHUB_PRIVATE_KEY", "PERSAIS_TELEGRAM_TOKEN",
                    "DATABASE_URL", "AWS_SECRET_ACCESS_KEY")  # fmt: skip

HOSTILE = '''\
"""What a generated test could reach, if nothing held it."""

import asyncio
import json
import logging

os = logging.os
socket = asyncio.base_events.socket
subprocess = asyncio.base_events.subprocess
TARGETS = json.loads({targets!r})


def attempt(what, action):
    try:
        return f"{{what}}: did {{action()!r}}"
    except Exception as exc:
        return f"{{what}}: refused {{type(exc).__name__}}: {{exc}}"


def connect(family, address):
    with socket.socket(family) as s:
        s.settimeout(3)
        s.connect(address)
    return "connected"


def read(path):
    with open(path, "rb") as f:
        return f.read()


def write(path):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(fd, b"escaped")
    os.close(fd)
    return "written"


def test_reach_out():
    pids = [p for p in os.listdir("/proc") if p.isdigit()]
    files = ["/proc/self/environ", *[f"/proc/{{p}}/environ" for p in pids], TARGETS["key"]]
    seen = {{
        "environ": dict(os.environ),
        "tcp": attempt("tcp", lambda: connect(socket.AF_INET, ("127.0.0.1", TARGETS["port"]))),
        "unix": [attempt(p, lambda p=p: connect(socket.AF_UNIX, p)) for p in TARGETS["unix"]],
        "files": [attempt(p, lambda p=p: read(p)) for p in files],
        "writes": [attempt(p, lambda p=p: write(p)) for p in TARGETS["writes"]],
        "run": attempt("run", lambda: subprocess.run(["/bin/true"]).returncode),
        "fork": attempt("fork", lambda: os.fork() or os._exit(0)),
    }}
    seen["exec"] = attempt("exec", lambda: os.execv("/bin/true", ["/bin/true"]))
    raise AssertionError("SEEN " + json.dumps(seen))
'''

MARKER = '''\
"""Leaves a mark where the checks may write, when it runs."""

import logging

os = logging.os


def test_runs():
    fd = os.open(os.path.join(os.environ["TMPDIR"], "ran"), os.O_WRONLY | os.O_CREAT, 0o644)
    os.close(fd)
'''


@dataclass
class Hostile:
    report: Report
    seen: dict[str, Any]
    accepted: int  # connections the parent's listeners accepted
    escaped: list[Path]  # outside files the hostile test tried to write, as they are now

    @property
    def said(self) -> str:
        return "\n".join(self.report.problems)


def listener(family: int, address: Any) -> socket.socket:
    server = socket.socket(family)
    server.bind(address)
    server.listen(8)
    server.setblocking(False)
    return server


def accepted(servers: list[socket.socket]) -> int:
    count = 0
    for server in servers:
        while True:
            try:
                server.accept()[0].close()
            except BlockingIOError:
                break
            count += 1
    return count


async def echo_workspace(repository: Path, jobs: Path, job_id: str) -> Workspace:
    ws = await Workspace.create(repository, jobs, job_id=job_id, slug="echo")
    write(ws.path, render(TEMPLATES, ScaffoldRequest("agent", "echo", "echo", "Echo")))
    return ws


async def check(ws: Workspace, others: tuple[str, ...] = ()) -> Report:
    return await validate(ws.path, await ws.changed_files(), "echo", others=others)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hostile]:
    """One validation of the hostile test, with sentinels planted in the parent's secret
    variables and in a key file beside the jobs (as in PERSAIS_HOME), and listeners open."""
    need_bwrap()
    tmp = tmp_path_factory.mktemp("hostile")
    home = tmp / "home"
    home.mkdir()
    key = home / "github-app.pem"
    key.write_text(SENTINEL)
    repository = home_repository(tmp / "repository")
    token = secrets.token_hex(4)
    with ExitStack() as stack:
        monkeypatch = stack.enter_context(pytest.MonkeyPatch.context())
        for name in SECRET_VARIABLES:
            monkeypatch.setenv(name, SENTINEL)
        ws = asyncio.run(echo_workspace(repository, home / "jobs", "h1"))
        scratch = ws.path.parent / "check-tmp"  # where the checks may write: the sandbox sees it
        scratch.mkdir()
        tcp = stack.enter_context(listener(socket.AF_INET, ("127.0.0.1", 0)))
        unix = [
            stack.enter_context(listener(socket.AF_UNIX, str(where / "parent.sock")))
            for where in (scratch, home)
        ]
        writes = [
            ws.path / "dynamic" / "agents" / "echo" / "escape.txt",  # the worktree itself
            ws.path.parent / "escape.txt",  # the job's folder
            home / "escape.txt",  # PERSAIS_HOME
            repository / "escape.txt",
            Path(f"/root/persais-escape-{token}.txt"),
            Path(f"/tmp/persais-escape-{token}.txt"),  # the sandbox's /tmp is its own
            scratch / "allowed.txt",  # the one place it may write
        ]
        stack.callback(lambda: [p.unlink(missing_ok=True) for p in writes])
        targets = {
            "port": tcp.getsockname()[1],
            "unix": [s.getsockname() for s in unix],
            "key": str(key),
            "writes": [str(p) for p in writes],
        }
        (ws.path / "tests" / "dynamic" / "test_echo.py").write_text(
            HOSTILE.format(targets=json.dumps(targets))
        )
        report = asyncio.run(check(ws))
        count = accepted([tcp, *unix])
        escaped = [p for p in writes if p.exists()]
        seen_line = next((line for line in report.problems if "AssertionError: SEEN " in line), "")
        seen = json.loads(seen_line.split("AssertionError: SEEN ", 1)[1]) if seen_line else {}
        yield Hostile(report, seen, count, escaped)


def test_the_hostile_test_passed_the_lint_and_ran_sealed(hostile: Hostile) -> None:
    assert hostile.report.sandboxed
    assert hostile.report.steps["policy"] == "ok"
    assert hostile.report.steps["ruff"] == "ok"
    assert hostile.report.steps["tests"] == "failed"  # on purpose, with what it saw
    assert hostile.seen, hostile.said  # an exec that worked would have ended pytest quietly


def test_a_generated_test_connects_nowhere(hostile: Hostile) -> None:
    assert hostile.accepted == 0
    assert "refused ConnectionRefusedError" in hostile.seen["tcp"]  # its own, empty loopback
    for attempt in hostile.seen["unix"]:  # one of them is in a folder the sandbox sees
        assert "refused PermissionError" in attempt or "FileNotFoundError" in attempt, attempt


def test_a_generated_test_sees_no_secret(hostile: Hostile) -> None:
    assert SENTINEL not in json.dumps(hostile.seen)
    assert SENTINEL not in hostile.said
    environ = set(hostile.seen["environ"]) - {"PYTEST_CURRENT_TEST", "PYTEST_VERSION"}
    # Ours, and PWD: bubblewrap's own, for --chdir.
    assert environ == {"PATH", "HOME", "TMPDIR", "LANG", "PYTHONDONTWRITEBYTECODE", "PWD"}
    files = hostile.seen["files"]
    assert any(f.startswith("/proc/self/environ: did b'PATH=/usr/bin:/bin") for f in files)
    # Its pid 1 is bubblewrap, started with an empty environment; the parent is not there.
    assert any(f.startswith("/proc/1/environ: did b''") for f in files), files
    assert "No such file or directory" in files[-1]  # the key file beside the jobs


def test_a_generated_test_writes_nowhere_but_its_scratch_folder(hostile: Hostile) -> None:
    writes = dict(line.split(": ", 1) for line in hostile.seen["writes"])
    worktree, *_, root, tmp, scratch = writes
    assert hostile.escaped == [Path(scratch)]  # nothing else exists outside
    assert writes[scratch] == "did 'written'"
    # The worktree is read-only (a test cannot rewrite the change it validates), and so is
    # everything outside /tmp. A folder under /tmp (these tests' own) is a folder of the
    # sandbox's private /tmp, gone with it.
    assert writes[worktree].startswith("refused OSError: [Errno 30] Read-only file system")
    assert writes[root].startswith("refused OSError: [Errno 30] Read-only file system")
    assert writes[tmp] == "did 'written'"


def test_a_generated_test_starts_no_process(hostile: Hostile) -> None:
    for attempt in ("run", "fork", "exec"):
        assert hostile.seen[attempt].startswith(
            f"{attempt}: refused PermissionError: [Errno 1] Operation not permitted"
        ), hostile.seen[attempt]


def marked(ws: Workspace) -> Path:
    (ws.path / "tests" / "dynamic" / "test_echo_marks.py").write_text(MARKER)
    return ws.path.parent / "check-tmp" / "ran"


def test_a_clean_change_runs_its_tests_sealed(tmp_path: Path) -> None:
    need_bwrap()

    async def run() -> tuple[Report, bool]:
        ws = await echo_workspace(home_repository(tmp_path / "repository"), tmp_path, "c1")
        marker = marked(ws)
        return await check(ws), marker.exists()

    report, ran = asyncio.run(run())
    assert report.ok, report.problems
    assert report.steps == {"policy": "ok", "ruff": "ok", "tests": "ok", "load": "ok"}
    assert report.sandboxed
    assert ran


def test_without_bubblewrap_validation_runs_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_which = shutil.which
    monkeypatch.setattr(
        shutil, "which", lambda name, *a, **k: None if name == "bwrap" else real_which(name)
    )

    async def run() -> tuple[Report, bool]:
        ws = await echo_workspace(home_repository(tmp_path / "repository"), tmp_path, "u1")
        marker = marked(ws)
        return await check(ws), marker.exists()

    report, ran = asyncio.run(run())
    assert report.ok, report.problems
    assert not report.sandboxed
    assert ran


def test_a_lint_failure_runs_no_test(tmp_path: Path) -> None:
    async def run() -> tuple[Report, bool]:
        ws = await echo_workspace(home_repository(tmp_path / "repository"), tmp_path, "l1")
        marker = marked(ws)
        test = ws.path / "tests" / "dynamic" / "test_echo.py"
        test.write_text("import json\n" + test.read_text())  # F401: imported, never used
        return await check(ws), marker.exists()

    report, ran = asyncio.run(run())
    assert report.steps == {"policy": "ok", "ruff": "failed"}
    assert any("F401" in p for p in report.problems), report.problems
    assert not ran


def weather_repository(path: Path) -> Path:
    """A home repository with a weather agent already on main."""
    repository = home_repository(path)
    write(repository, render(TEMPLATES, ScaffoldRequest("agent", "weather", "weather", "Sky")))
    subprocess.run(["git", "-C", str(repository), "add", "-A"], check=True)
    subprocess.run(
        ["git", "-C", str(repository), "-c", "user.name=t", "-c", "user.email=t@example.com",
         "commit", "-qm", "weather"], check=True,
    )  # fmt: skip
    return repository


OTHER_AGENT = {
    "edits": lambda tree: (tree / "dynamic/agents/weather/agent.py").write_text("X = 1\n"),
    "removes": lambda tree: shutil.rmtree(tree / "dynamic/agents/weather"),
    "removes its test": lambda tree: (tree / "tests/dynamic/test_weather.py").unlink(),
    "adds to": lambda tree: (tree / "dynamic/agents/weather/notes.md").write_text("x\n"),
}


@pytest.mark.parametrize("how", sorted(OTHER_AGENT))
def test_a_change_to_another_agent_is_refused_before_anything_runs(
    tmp_path: Path, how: str
) -> None:
    async def run() -> tuple[Report, Report, bool]:
        repository = weather_repository(tmp_path / "repository")
        ws = await echo_workspace(repository, tmp_path, "o1")
        marker = marked(ws)
        OTHER_AGENT[how](ws.path)
        refused = await check(ws)
        ran = marker.exists()
        named = await check(ws, others=("weather",))  # the plan names weather: allowed
        return refused, named, ran

    refused, named, ran = asyncio.run(run())
    assert refused.policy_refused
    assert refused.steps == {"policy": "failed"}
    assert not ran
    assert all("[scope]" in p and "weather" in p for p in refused.problems), refused.problems
    assert any("belongs to agent weather, which the plan does not name" in p
               for p in refused.problems)  # fmt: skip
    assert named.steps["policy"] == "ok"


CAPS = {
    "size.file": {"dynamic/agents/echo/agent.py": MAX_FILE_BYTES + 1},
    "size.change": {  # each file within its cap, all of them over the change's
        f"dynamic/agents/echo/data{i}.json": MAX_FILE_BYTES
        for i in range(MAX_CHANGE_BYTES // MAX_FILE_BYTES + 1)
    },
    "size.files": {f"dynamic/agents/echo/note{i}.md": 10 for i in range(MAX_FILES)},
}


@pytest.mark.parametrize("rule", sorted(CAPS))
def test_a_change_over_a_cap_is_refused_before_anything_runs(tmp_path: Path, rule: str) -> None:
    async def run() -> tuple[Report, bool]:
        ws = await echo_workspace(home_repository(tmp_path / "repository"), tmp_path, "s1")
        marker = marked(ws)
        for path, size in CAPS[rule].items():
            target = ws.path / path
            kept = target.read_text() if target.exists() else ""
            target.write_text(kept + "#" * max(size - len(kept), 0))
        return await check(ws), marker.exists()

    report, ran = asyncio.run(run())
    assert report.policy_refused
    assert report.steps == {"policy": "failed"}
    assert [p for p in report.problems if f"[{rule}]" in p], report.problems
    assert not ran


def test_a_check_sees_only_the_files_of_etc_it_needs(tmp_path: Path) -> None:
    """Not /etc/shadow (root reads it without capabilities) nor an operator's files there:
    a check's output reaches the model's prompt and the chat."""
    need_bwrap()
    from mechanic.sandbox import run_sealed

    (tmp_path / "work").mkdir()
    (tmp_path / "scratch").mkdir()
    code = "import os, json; print(json.dumps(sorted(os.listdir('/etc'))))"
    done = asyncio.run(
        run_sealed(["-c", code], worktree=tmp_path / "work", scratch=tmp_path / "scratch",
                   time_limit=30)
    )  # fmt: skip
    assert done.sandboxed
    seen = set(json.loads(done.output.strip().splitlines()[-1]))
    assert seen <= {"ld.so.cache", "localtime", "passwd", "group", "nsswitch.conf"}
    assert "shadow" not in seen
