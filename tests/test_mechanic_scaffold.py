"""Templates: a rendered scaffold on its own is policy-clean, loads, and passes its test."""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from pymodbus.exceptions import ConnectionException, ModbusIOException, ParameterException

from app.agents.testing import ask, load_agent, modbus_server
from app.deploy.files import ReleaseFiles, smoke_cases
from mechanic.policy import check_paths, check_source
from mechanic.scaffold import Example, ScaffoldError, ScaffoldRequest, render, write

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "templates"
MODBUS = {"device_id": 1}
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
        ({"options": {"name": "x"}}, "takes no option name"),
        ({"kind": "modbus_tool", "options": {}}, "device_id"),
        ({"kind": "modbus_tool", "options": {"device_id": 300}}, "device_id"),
        ({"kind": "modbus_tool", "options": {"device_id": 1, "host": "h"}}, "no option host"),
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
    "Usage: /plc read <host>[:<port>] <address> [count]\n"
    "Reads count holding registers (1-125, default 1) from address (0-65535) "
    "of the PLC at host (a name, IPv4 or [IPv6] address; port 502 by default)."
)


def test_the_modbus_scaffold_reads_a_real_modbus_server(tmp_path: Path) -> None:
    write(tmp_path, render(TEMPLATES, REQUESTS[2]))

    async def run() -> tuple[int, list[str]]:
        loaded = await load_agent("plc", tmp_path / "dynamic" / "agents")
        async with modbus_server([7, 8, 9, 10]) as port:
            answers = [
                (await ask(loaded, say)).text
                for say in (
                    f"read 127.0.0.1:{port} 0 4",
                    f"READ localhost:{port} 2",
                    f"read 127.0.0.1:{port} 2 3",  # past the last register
                )
            ]
        return port, [*answers, (await ask(loaded, f"read 127.0.0.1:{port} 0 4")).text]

    port, answers = asyncio.run(run())
    assert answers == [
        f"Registers 0..3 on 127.0.0.1:{port}: 7, 8, 9, 10",
        f"Registers 2..2 on localhost:{port}: 9",
        f"PLC error at 127.0.0.1:{port}: illegal data address (code 2)",
        f"PLC at 127.0.0.1:{port} is not reachable",
    ]


@pytest.mark.parametrize(
    "say",
    [
        "", "help", "status", "read", "read 127.0.0.1", "read 127.0.0.1 0 1 2",
        "read 127.0.0.1 x", "read 127.0.0.1 -1", "read 127.0.0.1 65536", "read 127.0.0.1 0 0",
        "read 127.0.0.1 0 126", "read 127.0.0.1 65535 2", "read 127.0.0.1:0 0",
        "read 127.0.0.1:65536 0", "read 127.0.0.1: 0", "read 127.0.0.1:x 0", "read :502 0",
        "read ::1 0", "read [::1 0", "read [::1]x 0", "read [::g]:502 0", "read [1:2:3]:502 0",
        "read 1.2.3.256 0", "read 1.2.3 0", "read bad_host 0", "read -host 0", "read a..b 0",
        "read h\u00e9.example 0", "read 127.0.0.1 \u00b2",
    ],
)  # fmt: skip
def test_the_modbus_agent_answers_malformed_input_with_its_usage(tmp_path: Path, say: str) -> None:
    write(tmp_path, render(TEMPLATES, REQUESTS[2]))

    async def run() -> str:
        loaded = await load_agent("plc", tmp_path / "dynamic" / "agents")
        return (await ask(loaded, say)).text

    assert asyncio.run(run()) == USAGE


def test_the_modbus_agent_parses_hosts_and_ports(tmp_path: Path) -> None:
    write(tmp_path, render(TEMPLATES, REQUESTS[2]))

    async def run() -> list[tuple[str, int, int, int]]:
        loaded = await load_agent("plc", tmp_path / "dynamic" / "agents")
        calls: list[tuple[str, int, int, int]] = []

        async def read(host: str, port: int, address: int, count: int) -> str:
            calls.append((host, port, address, count))
            return "read"

        loaded.agent.read = read  # type: ignore[attr-defined]
        for say in (
            "read plc.example.com 0", "read PLC-1:1502 65535", "read 10.0.0.7:502 10 125",
            "read [::1]:5020 0 2", "read [fe80::1] 1", "read [::ffff:10.0.0.1]:7 3",
            "read [1:2:3:4:5:6:7:8] 0", "read localhost. 0",
        ):  # fmt: skip
            assert (await ask(loaded, say)).text == "read", say
        return calls

    assert asyncio.run(run()) == [
        ("plc.example.com", 502, 0, 1),
        ("PLC-1", 1502, 65535, 1),
        ("10.0.0.7", 502, 10, 125),
        ("::1", 5020, 0, 2),
        ("fe80::1", 502, 1, 1),
        ("::ffff:10.0.0.1", 7, 3, 1),
        ("1:2:3:4:5:6:7:8", 502, 0, 1),
        ("localhost.", 502, 0, 1),
    ]


def test_an_unreachable_ipv6_plc_is_named_with_brackets(tmp_path: Path) -> None:
    write(tmp_path, render(TEMPLATES, REQUESTS[2]))

    async def run() -> str:
        loaded = await load_agent("plc", tmp_path / "dynamic" / "agents")
        with socket.socket() as probe:  # a port nothing listens on
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        return (await ask(loaded, f"read [::1]:{port} 0")).text

    assert re.fullmatch(r"PLC at \[::1\]:\d+ is not reachable", asyncio.run(run()))


def test_the_deploy_smoke_check_replays_only_the_device_free_usage_assertion(
    tmp_path: Path,
) -> None:
    write(tmp_path, render(TEMPLATES, REQUESTS[2]))
    assert smoke_cases(ReleaseFiles(tmp_path), "plc") == [("help", USAGE)]


@pytest.mark.parametrize(
    ("failure", "answer"),
    [
        (ModbusIOException("no response"), "PLC at plc.local:502 is not reachable"),
        (ConnectionException("lost"), "PLC at plc.local:502 is not reachable"),
        (TimeoutError(), "PLC at plc.local:502 is not reachable"),
        (
            ParameterException("bad\nframe"),
            "PLC at plc.local:502 failed: Modbus Error: [Invalid Parameter] bad frame",
        ),
    ],
)
def test_a_failing_modbus_read_is_one_line_and_the_client_is_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: Exception, answer: str
) -> None:
    write(tmp_path, render(TEMPLATES, REQUESTS[2]))
    closed: list[bool] = []

    class Client:
        def __init__(self, host: str, *, port: int, timeout: float, retries: int) -> None:
            assert (host, port, timeout, retries) == ("plc.local", 502, 3, 1)

        async def connect(self) -> bool:
            return True

        async def read_holding_registers(self, address: int, count: int, device_id: int) -> None:
            raise failure

        def close(self) -> None:
            closed.append(True)

    async def run() -> str:
        loaded = await load_agent("plc", tmp_path / "dynamic" / "agents")
        module_globals = type(loaded.agent).read.__globals__  # type: ignore[attr-defined]
        monkeypatch.setitem(module_globals, "AsyncModbusTcpClient", Client)
        return (await ask(loaded, "read plc.local 0")).text

    assert asyncio.run(run()) == answer
    assert closed == [True]
