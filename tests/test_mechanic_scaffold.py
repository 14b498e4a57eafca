"""Templates: a rendered scaffold on its own is policy-clean, loads, and passes its test."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from app.agents.testing import ask, load_agent
from mechanic.policy import check_paths, check_source
from mechanic.scaffold import Example, ScaffoldError, ScaffoldRequest, render, write

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "templates"
MODBUS = {"host": "127.0.0.1", "port": 502, "device_id": 1}
REQUESTS = [
    ScaffoldRequest("agent", "echo", "echo", "Repeats what you say"),
    ScaffoldRequest("tool", "adder", "add", "Adds numbers"),
    ScaffoldRequest("modbus_tool", "plc", "plc", "Reads the PLC", options=MODBUS),
]


@pytest.mark.parametrize("request_", REQUESTS, ids=lambda r: r.kind)
def test_a_rendered_scaffold_is_clean_loads_and_passes_its_own_test(
    tmp_path: Path, request_: ScaffoldRequest
) -> None:
    files = render(TEMPLATES, request_)
    assert check_paths(files, tmp_path) == []
    permissions = ["modbus"] if request_.kind == "modbus_tool" else []
    for path, source in files.items():
        if path.endswith(".py"):
            assert check_source(path, source, permissions, test=path.startswith("tests/")) == []
    write(tmp_path, files)

    loaded = asyncio.run(load_agent(request_.name, tmp_path / "dynamic" / "agents"))
    assert loaded.manifest.command == request_.command

    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/dynamic"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout


def test_examples_from_the_plan_become_assertions_the_bare_scaffold_fails(
    tmp_path: Path,
) -> None:
    request_ = ScaffoldRequest(
        "agent", "echo", "echo", "Repeats", examples=[Example("Hello", "Echo: Hello")]
    )
    files = render(TEMPLATES, request_)
    assert '== "Echo: Hello"' in files["tests/dynamic/test_echo.py"]
    write(tmp_path, files)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/dynamic"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1  # the behaviour is Aider's job; the test is the judge
    assert "Echo received: Hello" in done.stdout


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"kind": "shell"}, "unknown kind"),
        ({"name": "../../app"}, "name"),
        ({"command": "Echo"}, "command"),
        ({"description": 'x"; import os; "'}, "description"),
        ({"version": "1"}, "version"),
    ],
)
def test_a_hostile_or_malformed_request_is_refused(changes: dict, message: str) -> None:
    fields = {"kind": "agent", "name": "echo", "command": "echo", "description": "ok"}
    with pytest.raises(ScaffoldError, match=message):
        render(TEMPLATES, ScaffoldRequest(**{**fields, **changes}))


def test_a_missing_template_variable_is_an_error_not_an_empty_string(tmp_path: Path) -> None:
    shutil.copytree(TEMPLATES, tmp_path / "templates")
    (tmp_path / "templates" / "agent" / "agent.py.j2").write_text("x = '{{ nope }}'\n")
    with pytest.raises(Exception, match="nope"):
        render(tmp_path / "templates", REQUESTS[0])


def test_the_modbus_scaffold_reads_a_real_modbus_server(tmp_path: Path) -> None:
    write(tmp_path, render(TEMPLATES, REQUESTS[2]))

    async def run() -> str:
        from app.agents.testing import modbus_server

        loaded = await load_agent("plc", tmp_path / "dynamic" / "agents")
        async with modbus_server([7, 8, 9, 10]) as port:
            loaded.agent.port = port  # type: ignore[attr-defined]
            return (await ask(loaded, "2 2")).text

    assert asyncio.run(run()) == "Registers 2..3: 9, 10"
