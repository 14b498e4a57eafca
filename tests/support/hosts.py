"""Agent hosts for tests and benches: the real launcher (a sandboxed host process per agent,
bubblewrap where installed), with the real broker keeping state in memory."""

from __future__ import annotations

import os

from app.agents.capabilities import Broker
from app.agents.hosted import HostLauncher
from app.agents.jail import Jail, find_bwrap
from app.agents.manifest import Manifest
from app.agents.state import MemoryState


def launcher(
    *, timeout: float = 30.0, devices: dict[str, tuple[str, int]] | None = None,
    require_sandbox: bool = False,
) -> HostLauncher:  # fmt: skip
    state = MemoryState()

    def broker(manifest: Manifest) -> object:
        return Broker(manifest.name, manifest.permissions, state, devices=devices).serve

    return HostLauncher(
        Jail(find_bwrap()), broker,  # type: ignore[arg-type]
        timeout=timeout, require_sandbox=require_sandbox,
    )  # fmt: skip


def need_bwrap() -> str:
    """bubblewrap's path; under CI a missing sandbox fails the test instead of skipping it."""
    import pytest

    found = find_bwrap()
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("bubblewrap (bwrap) is missing: CI must run the sandbox for real")
        pytest.skip("bubblewrap (bwrap) is not installed")
    return found
