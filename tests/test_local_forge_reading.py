"""`persais pr list/show/diff` read the local forge's pull requests (real processes on a
real forge and database); [View PR] names the command, shown as the console's page when a
console is reachable."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from app.forge import pull_links
from app.forge.local import LocalForge
from app.web.address import write_address
from tests.support.config import make_settings
from tests.support.git_repos import home_repository
from tests.support.local_pulls import open_pull
from tests.support.pools import open_pool
from tests.support.processes import persais_env

pytestmark = pytest.mark.slow  # each command is a process of its own (about 2 s)

BODY = "Adds /echo.\n\nMechanic job j1"
COLOURED = "\x1b[32m+\x1b[m\x1b[32mprint('echo')"  # git's green for an added line


def persais(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", *args], env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip


@pytest.fixture
def forge_with_pulls(tmp_path: Path, database: str, sql: Any) -> dict[str, str]:
    """#1 open (a Mechanic job's, validated), #2 merged, #3 closed; the env to read them."""
    home = tmp_path / "home"
    checkout = home_repository(tmp_path / "checkout")
    sql(
        "INSERT INTO jobs (id, conversation, requested_by, request, status, rounds)"
        " VALUES ('j1', 'cli:ada', 'cli:ada', 'an echo agent', 'opened', 1)"
    )

    async def run() -> None:
        async with open_pool(database) as pool:
            forge = LocalForge(pool, home, checkout)
            await open_pull(
                forge, tmp_path / "w1", "mechanic/echo-j1",
                {"dynamic/agents/echo.py": "print('echo')\n"},
                title="Add agent /echo", body=BODY, job_id="j1",
            )  # fmt: skip
            number, head = await open_pull(
                forge, tmp_path / "w2", "mechanic/readme-j2",
                {"dynamic/agents/README.md": "agents, explained\n"}, title="Explain agents",
            )  # fmt: skip
            await forge.merge(number, sha=head, title="Explain agents")
            await open_pull(
                forge, tmp_path / "w3", "mechanic/gone-j3", {"gone.txt": "x\n"},
                title="Withdrawn", job_id="j3",
            )  # fmt: skip
            await forge.withdraw(job_id="j3", branch="mechanic/gone-j3")

    asyncio.run(run())
    return persais_env(home, database)


def test_list_show_and_diff_read_every_state(forge_with_pulls: dict[str, str]) -> None:
    env = forge_with_pulls
    listed = persais(env, "pr", "list")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert [line.split()[:2] for line in lines] == [
        ["#3", "closed"], ["#2", "merged"], ["#1", "open"]
    ]  # fmt: skip
    assert "Add agent /echo  (mechanic/echo-j1 → main)" in lines[2]
    merged = persais(env, "pr", "list", "--state", "merged")
    assert [line.split()[0] for line in merged.stdout.splitlines()] == ["#2"]

    shown = persais(env, "pr", "show", "1")
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    assert out.startswith("#1 Add agent /echo\nopen · mechanic/echo-j1 → main · head ")
    assert BODY in out
    assert "Files (1 file changed, 1 insertion(+)):\n  A  dynamic/agents/echo.py\n" in out
    assert "Mechanic validation: passed (job j1, 1 repair round; the job is opened)" in out
    assert "persais pr diff 1" in out

    second = persais(env, "pr", "show", "2").stdout
    assert " · merged as " in second
    assert "  M  dynamic/agents/README.md" in second
    assert "no checks: the local forge runs no CI" in second
    # A withdrawn pull request's branch is deleted; its recorded head still shows the change.
    assert "  A  gone.txt" in persais(env, "pr", "show", "3").stdout

    patch = persais(env, "pr", "diff", "1")
    assert patch.returncode == 0, patch.stderr
    assert "+++ b/dynamic/agents/echo.py\n" in patch.stdout
    assert "+print('echo')" in patch.stdout
    assert "\x1b[" not in patch.stdout  # piped: no colour
    assert COLOURED in persais(env, "pr", "diff", "1", "--color", "always").stdout
    assert "-agents\n+agents, explained" in persais(env, "pr", "diff", "2").stdout


def test_a_diff_to_a_terminal_is_coloured(forge_with_pulls: dict[str, str]) -> None:
    leader, follower = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app", "pr", "diff", "1"], env=forge_with_pulls,
            stdout=follower, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        os.close(follower)
        out = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the other side closed
                break
            if not chunk:
                break
            out += chunk
        assert proc.wait(timeout=120) == 0
    finally:
        os.close(leader)
    assert COLOURED.encode() in out


def test_a_missing_pull_request_is_one_line(forge_with_pulls: dict[str, str]) -> None:
    for args in (("show", "9"), ("diff", "9")):
        done = persais(forge_with_pulls, "pr", *args)
        assert done.returncode == 1
        assert done.stderr.strip() == "persais: there is no pull request #9"
    assert persais(forge_with_pulls, "pr", "list", "--limit", "0").returncode == 2


def test_an_empty_forge_and_a_github_home_say_so(tmp_path: Path, database: str) -> None:
    env = persais_env(tmp_path / "home", database)
    assert persais(env, "pr", "list").stdout == "no pull requests\n"
    key = tmp_path / "app.pem"
    key.write_text("not read: the command refuses first")
    app = {"PERSAIS_HOME_REPO": "ada/persais", "GITHUB_APP_ID": "1",
           "GITHUB_PRIVATE_KEY_PATH": str(key)}  # fmt: skip
    github = persais(env | app, "pr", "list")
    assert github.returncode == 2
    assert "the pull requests are on GitHub (PERSAIS_HOME_REPO=ada/persais)" in github.stderr


def test_view_pr_is_the_command_shown_as_the_consoles_page_when_there_is_one(
    tmp_path: Path, database: str
) -> None:
    """The forge records the command; the address is made as it is shown: the public URL,
    else the running server's (its serve.json, while its process lives), else the command."""
    checkout = home_repository(tmp_path / "checkout")
    home = tmp_path / "home"

    async def run() -> str:
        async with open_pool(database) as pool:
            forge = LocalForge(pool, home, checkout)
            number, _ = await open_pull(
                forge, tmp_path / "w", "mechanic/a-1", {"a.txt": "a\n"}, title="A"
            )
            return (await forge.pull_state(number)).url

    recorded = asyncio.run(run())
    assert recorded == "persais pr show 1"
    nothing = make_settings(home, database)
    assert pull_links.shown(recorded, pull_links.console_base(nothing)) == "persais pr show 1"
    write_address(home, "http://127.0.0.1:8001")  # as `persais serve` does, this process's
    assert pull_links.shown(recorded, pull_links.console_base(nothing)) == (
        "http://127.0.0.1:8001/console/pulls/1"
    )
    public = make_settings(home, database, PERSAIS_PUBLIC_URL="https://persais.example.org/")
    assert pull_links.shown(recorded, pull_links.console_base(public)) == (
        "https://persais.example.org/console/pulls/1"
    )
    gone = json.loads((home / "serve.json").read_text()) | {"pid": dead_pid()}
    (home / "serve.json").write_text(json.dumps(gone))
    assert pull_links.console_base(nothing) is None
    # GitHub's addresses, and anything else, pass through.
    github = "https://github.com/octo/home/pull/3"
    assert pull_links.shown(github, "http://127.0.0.1:8001") == github


def dead_pid() -> int:
    """The id of a process that has ended (and been reaped)."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_a_mechanic_jobs_pull_request_reads_back(tmp_path: Path, database: str) -> None:
    """The whole path: `persais mechanic` opens #1 and names the command; it shows the job's
    files and its validation."""
    env = persais_env(tmp_path / "home", database)
    opened = persais(env, "mechanic", "Say hello", "--template-only", "--name", "greeter")
    assert opened.returncode == 0, opened.stdout + opened.stderr
    assert "Pull request #1 is open: persais pr show 1" in opened.stdout
    shown = persais(env, "pr", "show", "1")
    assert shown.returncode == 0, shown.stderr
    assert "  A  dynamic/agents/greeter/agent.py" in shown.stdout
    assert "Mechanic validation: passed (job " in shown.stdout
    assert "0 repair rounds; the job is opened)" in shown.stdout
    assert "+class Greeter(" in persais(env, "pr", "diff", "1").stdout
