"""Templates: a rendered scaffold on its own is policy-clean, loads, and passes its test."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from app.agents.testing import ask, load_agent, modbus_server
from app.deploy.files import ReleaseFiles, smoke_cases
from mechanic.policy import check_paths, check_source
from mechanic.scaffold import Example, ScaffoldError, ScaffoldRequest, render, write

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "templates"
MODBUS = {"device_id": 1, "device_host": "plc.example", "device_port": 1502}
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
    for path, source in files.items():
        if path.endswith(".py"):
            assert check_source(path, source, test=path.startswith("tests/")) == []
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
        ({"options": {"name": "x"}}, "takes no option name"),
        ({"kind": "modbus_tool", "options": {}}, "device_id"),
        ({"kind": "modbus_tool", "options": {**MODBUS, "device_id": 300}}, "device_id"),
        ({"kind": "modbus_tool", "options": {**MODBUS, "device_host": 'h"x'}}, "device_host"),
        ({"kind": "modbus_tool", "options": {**MODBUS, "device_port": 0}}, "device_port"),
        ({"kind": "modbus_tool", "options": {**MODBUS, "host": "h"}}, "no option host"),
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


USAGE = (
    "Usage: /plc read <address> [count]\n"
    "Reads count holding registers (1-125, default 1) from address (0-65535) of the PLC."
)


def test_the_modbus_scaffold_reads_its_granted_device_through_the_core(tmp_path: Path) -> None:
    write(tmp_path, render(TEMPLATES, REQUESTS[2]))
    toml = (tmp_path / "dynamic/agents/plc/agent.toml").read_text()
    assert 'host = "plc.example"' in toml
    assert "port = 1502" in toml
    assert "write = false" in toml

    async def run() -> list[str]:
        async with modbus_server([7, 8, 9, 10]) as port:
            loaded = await load_agent("plc", tmp_path / "dynamic" / "agents", devices={"plc": port})
            says = ("read 0 4", "READ 2", "read 2 3")  # the last one is past the last register
            answers = [(await ask(loaded, say)).text for say in says]
        return [*answers, (await ask(loaded, "read 0 4")).text]

    assert asyncio.run(run()) == [
        "Registers 0..3 on plc: 7, 8, 9, 10",
        "Registers 2..2 on plc: 9",
        "PLC plc answered illegal data address (code 2)",
        "PLC plc is not reachable",
    ]


def test_a_read_outside_the_granted_range_is_refused_by_the_core(tmp_path: Path) -> None:
    write(tmp_path, render(TEMPLATES, REQUESTS[2]))
    manifest = tmp_path / "dynamic/agents/plc/agent.toml"
    manifest.write_text(manifest.read_text().replace("[[0, 65535]]", "[[0, 9]]"))

    async def run() -> list[str]:
        async with modbus_server(list(range(20))) as port:
            loaded = await load_agent("plc", tmp_path / "dynamic" / "agents", devices={"plc": port})
            return [(await ask(loaded, say)).text for say in ("read 8 2", "read 9 2")]

    inside, outside = asyncio.run(run())
    assert inside == "Registers 8..9 on plc: 8, 9"
    assert outside == (
        "Not allowed: agent plc may not reach unit 1 registers 9-10 of device 'plc':"
        " outside its grant"
    )


@pytest.mark.parametrize(
    "say",
    ["", "help", "status", "read", "read x", "read -1", "read 65536", "read 0 0", "read 0 126",
     "read 65535 2", "read 0 1 2", "read \u00b2", "read 127.0.0.1:502 0"],
)  # fmt: skip
def test_the_modbus_agent_answers_malformed_input_with_its_usage(tmp_path: Path, say: str) -> None:
    write(tmp_path, render(TEMPLATES, REQUESTS[2]))

    async def run() -> str:
        loaded = await load_agent("plc", tmp_path / "dynamic" / "agents")
        return (await ask(loaded, say)).text

    assert asyncio.run(run()) == USAGE


def test_the_deploy_smoke_check_replays_only_the_device_free_usage_assertion(
    tmp_path: Path,
) -> None:
    write(tmp_path, render(TEMPLATES, REQUESTS[2]))
    assert smoke_cases(ReleaseFiles(tmp_path), "plc") == [("help", USAGE)]
