"""What a release grants, and what it adds or widens against the release in service.

A grant is a manifest's `[permissions.*]` table as the core read it. A release records the
grants of every agent it holds (`releases.grants`), so the ledger shows who may reach what
and since when. A Deploy whose release adds or widens any grant needs an admin's press.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.agents.manifest import Device, ManifestError, Permissions, load_manifest

Grants = dict[str, dict[str, Any]]  # agent name -> Permissions.to_json()


@dataclass(frozen=True)
class Change:
    agent: str
    capability: str
    what: str  # "api.open-meteo.com", "line1 10.0.0.5:502 unit 1 registers 0-99 read-only"
    how: str  # "new" | "widened"

    def __str__(self) -> str:
        return f"{self.agent}: {self.capability} → {self.what} ({self.how})"


def of_folder(agents: Path) -> Grants:
    """The grants of every agent under `agents` whose manifest is valid (an invalid one is
    quarantined at load and grants nothing)."""
    found: Grants = {}
    if not agents.is_dir():
        return found
    for folder in sorted(p for p in agents.iterdir() if p.is_dir()):
        if folder.name.startswith((".", "_")):
            continue
        try:
            found[folder.name] = load_manifest(folder).permissions.to_json()
        except ManifestError:
            continue
    return found


def widened(
    before: Mapping[str, Mapping[str, Any]], after: Mapping[str, Mapping[str, Any]]
) -> list[Change]:
    """Every grant in `after` that `before` did not hold: a new capability, a new host, a new
    device, or a device reaching more (another unit, more addresses, writing)."""
    changes: list[Change] = []
    for agent in sorted(after):
        new = Permissions.model_validate(after[agent])
        old = Permissions.model_validate(before.get(agent, {}))
        if new.state is not None and old.state is None:
            changes.append(Change(agent, "state", "its own key-value store", "new"))
        if new.http is not None:
            had = set(old.http.hosts) if old.http else set()
            for host in new.http.hosts:
                if host not in had:
                    changes.append(Change(agent, "http", host, "new" if not had else "widened"))
        if new.modbus is not None:
            for device in new.modbus.devices:
                previous = old.modbus.device(device.name) if old.modbus else None
                if previous is None:
                    changes.append(Change(agent, "modbus", device.describe(), "new"))
                elif not _covers(previous, device):
                    changes.append(Change(agent, "modbus", device.describe(), "widened"))
    return changes


def overlaid(
    before: Mapping[str, Mapping[str, Any]], touched: Mapping[str, Mapping[str, Any] | None]
) -> Grants:
    """`before` with the agents a change touches as the change has them (None: the change
    removes the agent, or its manifest is invalid and grants nothing)."""
    after: Grants = {agent: dict(held) for agent, held in before.items()}
    for agent, held in touched.items():
        if held is None:
            after.pop(agent, None)
        else:
            after[agent] = dict(held)
    return after


def _covers(old: Device, new: Device) -> bool:
    if (old.host, old.port) != (new.host, new.port) or (new.write and not old.write):
        return False
    if not set(new.units) <= set(old.units):
        return False
    return all(
        any(lo <= nlo and nhi <= hi for lo, hi in old.addresses) for nlo, nhi in new.addresses
    )


def describe(grants: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """One line per agent that holds a grant: 'weather: http → api.open-meteo.com'."""
    lines = []
    for agent in sorted(grants):
        held = Permissions.model_validate(grants[agent])
        parts = []
        if held.state:
            parts.append("state")
        if held.http:
            parts.append("http → " + ", ".join(held.http.hosts))
        if held.modbus:
            parts.append("modbus → " + "; ".join(d.describe() for d in held.modbus.devices))
        if parts:
            lines.append(f"{agent}: " + "; ".join(parts))
    return lines
