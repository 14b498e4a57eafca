"""Render a scaffold from `templates/<kind>/` into a worktree.

Jinja2 with `StrictUndefined`: a variable the plan did not supply is an error, never an
empty string in generated code. Values are checked before rendering, so a hostile plan
(say, a name with quotes or dots) cannot write outside its folder or break out of a string.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

KINDS = ("agent", "tool", "modbus_tool")
# Kind-specific template variables a request may (and, checked below, must) supply.
OPTIONS: dict[str, frozenset[str]] = {
    "agent": frozenset(),
    "tool": frozenset(),
    "modbus_tool": frozenset({"device_id", "device_host", "device_port"}),
}
_NAME = re.compile(r"^[a-z][a-z0-9_]{1,31}$")
_VERSION = re.compile(r"^\d+\.\d+\.\d+$")
# A device's host: a lower-case DNS name or IPv4 address (the manifest's grant says the same).
HOST_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$"
_HOST = re.compile(HOST_PATTERN)


class ScaffoldError(ValueError):
    pass


@dataclass(frozen=True)
class Example:
    say: str
    expect: str


@dataclass(frozen=True)
class ScaffoldRequest:
    kind: str
    name: str
    command: str
    description: str
    version: str = "0.1.0"
    examples: Sequence[Example] = ()
    options: Mapping[str, object] = field(default_factory=dict)  # kind-specific (device_id)

    @property
    def class_name(self) -> str:
        return "".join(part.capitalize() for part in self.name.split("_"))


def planned_paths(request: ScaffoldRequest) -> dict[str, str]:
    """Template file → path in the repository."""
    folder = f"dynamic/agents/{request.name}"
    return {
        "agent.toml.j2": f"{folder}/agent.toml",
        "agent.py.j2": f"{folder}/agent.py",
        "test_agent.py.j2": f"tests/dynamic/test_{request.name}.py",
    }


def render(templates: Path, request: ScaffoldRequest) -> dict[str, str]:
    """The scaffold's files, path → content, without writing anything."""
    _check(request)
    env = Environment(
        loader=FileSystemLoader(templates / request.kind),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # noqa: S701 - we render Python and TOML, not HTML
    )
    variables = {
        "name": request.name,
        "command": request.command,
        "class_name": request.class_name,
        "description": request.description,
        "version": request.version,
        "examples": [{"say": e.say, "expect": e.expect} for e in request.examples],
        **request.options,
    }
    return {
        target: env.get_template(template).render(variables)
        for template, target in planned_paths(request).items()
    }


def write(worktree: Path, files: Mapping[str, str]) -> list[str]:
    for relative, content in files.items():
        path = worktree / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return sorted(files)


def _check(request: ScaffoldRequest) -> None:
    if request.kind not in KINDS:
        raise ScaffoldError(f"unknown kind {request.kind!r}; one of {', '.join(KINDS)}")
    for label, value in (("name", request.name), ("command", request.command)):
        if not _NAME.match(value):
            raise ScaffoldError(f"{label} {value!r}: lowercase letters, digits and _, 2-32 long")
    if not _VERSION.match(request.version):
        raise ScaffoldError(f"version {request.version!r} is not x.y.z")
    if not 0 < len(request.description) <= 200 or any(c in request.description for c in '"\\\n'):
        raise ScaffoldError("description: one line, at most 200 characters, no quotes")
    unknown = sorted(set(request.options) - OPTIONS[request.kind])
    if unknown:  # options become template variables: none may shadow a checked one
        raise ScaffoldError(f"{request.kind} takes no option {', '.join(unknown)}")
    if request.kind == "modbus_tool":
        # The one PLC the agent may read: it goes into the manifest's grant, never the code.
        device = request.options.get("device_id")
        if type(device) is not int or not 0 <= device <= 247:
            raise ScaffoldError(f"device_id {device!r} is not a Modbus unit id")
        host = request.options.get("device_host")
        if not isinstance(host, str) or not _HOST.match(host):
            raise ScaffoldError(f"device_host {host!r} is not a host name or IPv4 address")
        port = request.options.get("device_port")
        if type(port) is not int or not 0 < port <= 65535:
            raise ScaffoldError(f"device_port {port!r} is not a port")
