"""The Mechanic's policy: generated changes stay in their lane, generated code stays boxed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mechanic.policy import (
    MAX_CHANGE_BYTES,
    MAX_FILE_BYTES,
    MAX_FILES,
    check_paths,
    check_scope,
    check_size,
    check_source,
)
from tests.support.agents import ECHO


def rules(found: list) -> list[str]:
    return [v.rule for v in found]


@pytest.mark.parametrize(
    ("path", "rule"),
    [
        ("app/server.py", "path.outside"),
        (".github/workflows/ci.yml", "path.outside"),
        ("../../etc/x", "path.escape"),
        ("/etc/passwd", "path.escape"),
        ("dynamic/../app/cli.py", "path.escape"),
        ("dynamic/agents/echo/.env", "path.hidden"),
        ("dynamic/agents/echo/.aider.conf.yml", "path.hidden"),
        ("dynamic/agents/echo/run.sh", "path.suffix"),
        ("tests/test_core.py", "path.outside"),
    ],
)
def test_paths_outside_the_lane_are_refused(tmp_path: Path, path: str, rule: str) -> None:
    assert rules(check_paths([path], tmp_path)) == [rule]


def test_paths_in_the_lane_pass(tmp_path: Path) -> None:
    changed = [
        "dynamic/agents/echo/agent.py",
        "dynamic/agents/echo/agent.toml",
        "tests/dynamic/test_echo.py",
    ]
    assert check_paths(changed, tmp_path) == []


def test_a_symlink_out_of_the_tree_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    tree = tmp_path / "tree"
    (tree / "dynamic" / "agents").mkdir(parents=True)
    os.symlink(outside, tree / "dynamic" / "agents" / "evil")
    os.symlink("/etc/hostname", tree / "dynamic" / "agents" / "host.txt")
    found = check_paths(["dynamic/agents/evil/agent.py", "dynamic/agents/host.txt"], tree)
    assert rules(found) == ["path.symlink", "path.symlink"]


def test_a_plain_agent_is_clean() -> None:
    assert check_source("dynamic/agents/echo/agent.py", ECHO) == []


HOSTILE = {
    "import subprocess": "import",
    "from os import system": "import",
    "import os.path": "import",
    "import socket": "import",
    "import importlib; importlib.import_module('os')": "import",
    "__import__('os').system('id')": "call",
    "eval('1+1')": "call",
    "exec('x = 1')": "call",
    "getattr(str, 'up' + 'per')": "call",
    "().__class__.__bases__[0].__subclasses__()": "attribute",
    "print(__builtins__)": "name",
    "import asyncio\nasyncio.create_subprocess_exec('ls')": "attribute",
    "import asyncio\nasyncio.open_connection('evil.example', 80)": "attribute",
    "open('/tmp/x', 'w').write('x')": "call",
    "open('/tmp/x', mode=m)": "call",
    "from .sibling import x": "import.relative",
    "import pymodbus": "import",
    "import httpx": "import",
    "def broken(:": "syntax",
}


@pytest.mark.parametrize(("code", "rule"), HOSTILE.items())
def test_hostile_code_is_refused(code: str, rule: str) -> None:
    found = check_source("dynamic/agents/x/agent.py", code)
    assert rule in rules(found), found
    assert all(str(v).startswith("dynamic/agents/x/agent.py:") for v in found)


def test_no_permission_widens_the_imports() -> None:
    # The core serves http, modbus and state on the agent's behalf (`ctx.capability`).
    for library in ("httpx", "pymodbus.client", "requests", "psycopg"):
        assert rules(check_source("a.py", f"import {library}\n")) == ["import"], library


def test_a_change_stays_with_the_agents_its_plan_names(tmp_path: Path) -> None:
    for name in ("echo", "echo_bot", "weather"):
        (tmp_path / "dynamic" / "agents" / name).mkdir(parents=True)
    own = [
        "dynamic/agents/echo/agent.py",
        "dynamic/agents/echo/data/words.json",
        "tests/dynamic/test_echo.py",
        "tests/dynamic/test_echo_more.py",
    ]
    assert check_scope(own, ["echo"], tmp_path) == []
    others = {
        "dynamic/agents/weather/agent.py": "belongs to agent weather",
        "tests/dynamic/test_weather.py": "belongs to agent weather",
        "tests/dynamic/test_echo_bot.py": "belongs to agent echo_bot",  # the longer name wins
        "dynamic/agents/README.md": "belongs to no agent",
        "tests/dynamic/conftest.py": "belongs to no agent",
    }
    found = check_scope([*own, *others], ["echo"], tmp_path)
    assert {v.path: v.message.split(",")[0].split(":")[0] for v in found} == others
    assert {v.rule for v in found} == {"scope"}
    assert check_scope([*own, "tests/dynamic/test_weather.py"], ["echo", "weather"], tmp_path) == []


def test_size_caps_count_files_bytes_and_the_whole(tmp_path: Path) -> None:
    folder = tmp_path / "dynamic" / "agents" / "echo"
    folder.mkdir(parents=True)
    (folder / "big.py").write_bytes(b"#" * (MAX_FILE_BYTES + 1))
    (folder / "ok.py").write_bytes(b"#" * MAX_FILE_BYTES)
    changed = ["dynamic/agents/echo/big.py", "dynamic/agents/echo/ok.py"]
    assert rules(check_size(changed, tmp_path)) == ["size.file"]
    many = [f"dynamic/agents/echo/gone{i}.py" for i in range(MAX_FILES + 1)]  # removed: 0 bytes
    assert rules(check_size(many, tmp_path)) == ["size.files"]
    for i in range(MAX_CHANGE_BYTES // MAX_FILE_BYTES):
        (folder / f"part{i}.json").write_bytes(b"#" * MAX_FILE_BYTES)
    whole = [f"dynamic/agents/echo/part{i}.json" for i in range(4)] + ["dynamic/agents/echo/ok.py"]
    found = check_size(whole, tmp_path)
    assert rules(found) == ["size.change"]
    assert str(found[0]).startswith("the change's files hold 320 KiB; at most 256 KiB")


def test_generated_tests_may_use_pytest_but_nothing_more() -> None:
    assert check_source("t.py", "import pytest\n", test=True) == []
    assert rules(check_source("t.py", "import pytest\n")) == ["import"]
    assert rules(check_source("t.py", "import subprocess\n", test=True)) == ["import"]
