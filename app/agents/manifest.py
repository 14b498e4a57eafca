"""`agent.toml`: who an agent is and what it asks to be granted, checked before anything of
it runs.

A dynamic agent's powers are its manifest's `[permissions.*]` tables, each stating what it
wants and why. Nothing is granted by default and nothing is inferred from the code; the
core serves each capability on the agent's behalf and checks every call against these
tables (`app.agents.capabilities`). A release that adds or widens one needs an admin's
Deploy (`app.agents.grants`).

```toml
[permissions.state]
why = "remember each person's city"

[permissions.http]
hosts = ["api.open-meteo.com"]
why = "fetch the forecast"

[permissions.modbus]
why = "read the line's counters"
[[permissions.modbus.devices]]
name = "line1"
host = "10.0.0.5"
port = 502
units = [1]
addresses = [[0, 99]]   # inclusive ranges of register addresses
write = false
```
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

# Commands the core owns; an agent may not take them.
RESERVED_COMMANDS = frozenset(
    {
        "start",
        "help",
        "status",
        "agents",
        "mechanic",
        "abort",
        "rollback",
        "cancel",
        "deploy",
        "releases",
        "reload",
        "ask",
        "lesson",
        "lessons",
    }
)
# What a dynamic agent may ask for: capabilities the core serves on its behalf.
DYNAMIC_CAPABILITIES = ("state", "http", "modbus")
# Powers over Persais itself: built-ins only. A manifest in dynamic/ asking for one is refused.
BUILTIN_ONLY = frozenset({"registry", "status", "mechanic", "deploy", "memory"})

Name = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{1,31}$")]
# A DNS name or an IPv4 address, lower case; no wildcards, no ports, no schemes.
Host = Annotated[
    str,
    StringConstraints(
        max_length=253,  # pydantic's regex engine has no look-ahead for the length
        pattern=r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$",
    ),
]
# An HTTP grant names a host, and a port when it is not the scheme's default.
HttpHost = Annotated[
    str,
    StringConstraints(
        max_length=259,
        pattern=r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*(?::[1-9][0-9]{0,4})?$",
    ),
]
Why = Annotated[str, StringConstraints(max_length=200)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StateGrant(_Strict):
    why: Why = ""


class HttpGrant(_Strict):
    hosts: tuple[HttpHost, ...] = Field(min_length=1, max_length=20)
    why: Why = ""

    @field_validator("hosts")
    @classmethod
    def _unique(cls, hosts: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(sorted(set(hosts)))


class Device(_Strict):
    name: Name
    host: Host
    port: int = Field(default=502, ge=1, le=65535)
    units: tuple[Annotated[int, Field(ge=0, le=247)], ...] = Field(default=(1,), min_length=1)
    addresses: tuple[tuple[int, int], ...] = Field(default=((0, 65535),), min_length=1)
    write: bool = False

    @field_validator("addresses")
    @classmethod
    def _ranges(cls, ranges: tuple[tuple[int, int], ...]) -> tuple[tuple[int, int], ...]:
        for low, high in ranges:
            if not 0 <= low <= high <= 65535:
                raise ValueError(f"[{low}, {high}] is not a range of addresses in 0-65535")
        return ranges

    def allows(self, unit: int, address: int, count: int) -> bool:
        last = address + count - 1
        return unit in self.units and any(lo <= address and last <= hi for lo, hi in self.addresses)

    def describe(self) -> str:
        ranges = ", ".join(f"{lo}-{hi}" for lo, hi in self.addresses)
        units = ",".join(map(str, self.units))
        mode = "read/write" if self.write else "read-only"
        return f"{self.name} {self.host}:{self.port} unit {units} registers {ranges} {mode}"


class ModbusGrant(_Strict):
    devices: tuple[Device, ...] = Field(min_length=1, max_length=20)
    why: Why = ""

    @model_validator(mode="after")
    def _unique_names(self) -> ModbusGrant:
        names = [d.name for d in self.devices]
        if len(names) != len(set(names)):
            raise ValueError("two devices share a name")
        return self

    def device(self, name: str) -> Device | None:
        return next((d for d in self.devices if d.name == name), None)


class Permissions(_Strict):
    """What a dynamic agent asks for. Absent: not asked, not granted."""

    state: StateGrant | None = None
    http: HttpGrant | None = None
    modbus: ModbusGrant | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_list(cls, data: Any) -> Any:
        # `permissions = []` (the old form) means nothing; `["state"]` the one grant that
        # needs no detail. http and modbus must say which hosts and devices.
        if isinstance(data, list | tuple):
            table: dict[str, Any] = {}
            for item in data:
                if item in BUILTIN_ONLY:
                    raise ValueError(f"{item!r} belongs to built-in agents only")
                if item not in DYNAMIC_CAPABILITIES:
                    raise ValueError(f"unknown permission {item!r}")
                if item != "state":
                    raise ValueError(
                        f"{item!r} must be a table naming what it reaches: [permissions.{item}]"
                    )
                table["state"] = {}
            return table
        if isinstance(data, dict):
            for key in data:
                if key in BUILTIN_ONLY:
                    raise ValueError(f"{key!r} belongs to built-in agents only")
        return data

    def names(self) -> frozenset[str]:
        return frozenset(n for n in DYNAMIC_CAPABILITIES if getattr(self, n) is not None)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


class Manifest(_Strict):
    name: Name
    command: Name
    description: str = Field(min_length=1, max_length=200)
    version: Annotated[str, StringConstraints(pattern=r"^\d+\.\d+\.\d+$")]
    permissions: Permissions = Field(default_factory=Permissions)


class ManifestError(ValueError):
    pass


MAX_MANIFEST_BYTES = 16_384


def parse_manifest(text: str, folder_name: str) -> Manifest:
    """Check an `agent.toml` held as text (a pull request's, a release's)."""
    if len(text.encode()) > MAX_MANIFEST_BYTES:
        raise ManifestError(f"agent.toml is larger than {MAX_MANIFEST_BYTES} bytes")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ManifestError(f"agent.toml is not valid TOML: {exc}") from None
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "agent.toml"
        message = str(first["msg"]).removeprefix("Value error, ")
        raise ManifestError(f"agent.toml: {where}: {message}") from None
    if manifest.name != folder_name:
        raise ManifestError(f"agent.toml names {manifest.name!r} but the folder is {folder_name!r}")
    if manifest.command in RESERVED_COMMANDS:
        raise ManifestError(f"/{manifest.command} is a built-in command")
    return manifest


def load_manifest(folder: Path) -> Manifest:
    path = folder / "agent.toml"
    if not path.is_file():
        raise ManifestError("agent.toml is missing")
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise ManifestError("agent.toml is not UTF-8 text") from None
    return parse_manifest(text, folder.name)
