"""The Mechanic's policy: generated changes stay in their lane, generated code stays boxed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mechanic.policy import check_paths, check_source
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


def test_permissions_widen_exactly_what_they_grant() -> None:
    modbus = "from pymodbus.client import AsyncModbusTcpClient\n"
    assert check_source("a.py", modbus, permissions=["modbus"]) == []
    assert rules(check_source("a.py", modbus, permissions=["http"])) == ["import"]
    assert check_source("a.py", "import httpx\n", permissions=["http"]) == []


def test_generated_tests_may_use_pytest_but_nothing_more() -> None:
    assert check_source("t.py", "import pytest\n", test=True) == []
    assert rules(check_source("t.py", "import pytest\n")) == ["import"]
    assert rules(check_source("t.py", "import subprocess\n", test=True)) == ["import"]
