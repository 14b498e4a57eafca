"""`agent.toml`: who an agent is and what it may touch, checked before its code is imported."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

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
    }
)
# What a manifest may ask for. Each is a capability the context hands out (or a network
# allowance the Mechanic's policy checks); anything else is a lie or a typo.
KNOWN_PERMISSIONS = frozenset({"state", "registry", "status", "modbus", "http"})

Name = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{1,31}$")]


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Name
    command: Name
    description: str = Field(min_length=1, max_length=200)
    version: Annotated[str, StringConstraints(pattern=r"^\d+\.\d+\.\d+$")]
    permissions: tuple[str, ...] = ()


class ManifestError(ValueError):
    pass


def load_manifest(folder: Path) -> Manifest:
    path = folder / "agent.toml"
    if not path.is_file():
        raise ManifestError("agent.toml is missing")
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ManifestError(f"agent.toml is not valid TOML: {exc}") from None
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "agent.toml"
        raise ManifestError(f"agent.toml: {where}: {first['msg']}") from None
    if manifest.name != folder.name:
        raise ManifestError(f"agent.toml names {manifest.name!r} but the folder is {folder.name!r}")
    if manifest.command in RESERVED_COMMANDS:
        raise ManifestError(f"/{manifest.command} is a built-in command")
    unknown = sorted(set(manifest.permissions) - KNOWN_PERMISSIONS)
    if unknown:
        raise ManifestError(f"unknown permission(s): {', '.join(unknown)}")
    return manifest
