"""The agent registry: discover, load in isolation, quarantine, and swap atomically.

A load builds a complete new `AgentSet` beside the one in service: every manifest is
checked before any import, each `agent.py` is imported under a module name of its own, and
anything that fails (bad manifest, syntax error, failing import, an exception at import or
at `activate`, a command taken twice, a class that disagrees with its manifest) is put in
quarantine with its reason and traceback. Then the new set replaces the old in one
assignment. The old set is deactivated once the messages it was handling have finished.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import inspect
import logging
import sys
import traceback
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

from app.agents.base import Agent, AgentContext, ContextFactory
from app.agents.manifest import RESERVED_COMMANDS, Manifest, ManifestError, load_manifest

log = logging.getLogger(__name__)
MODULE_PREFIX = "persais_agents"
ACTIVATE_TIMEOUT = 10.0


@dataclass(frozen=True)
class LoadedAgent:
    manifest: Manifest
    agent: Agent
    context: AgentContext
    builtin: bool = False


@dataclass(frozen=True)
class Quarantined:
    name: str
    reason: str
    traceback: str = ""


@dataclass
class AgentSet:
    """One generation of agents. Immutable once in service."""

    agents: dict[str, LoadedAgent]
    quarantined: dict[str, Quarantined]
    fingerprint: str
    modules: list[str] = field(default_factory=list)
    root: Path = Path()  # the folder it was loaded from
    commit: str = "unknown"
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    in_flight: int = 0
    idle: asyncio.Event = field(default_factory=asyncio.Event)

    def by_command(self, command: str) -> LoadedAgent | None:
        for loaded in self.agents.values():
            if loaded.manifest.command == command:
                return loaded
        return None

    def describe(self) -> dict[str, object]:
        return {
            "fingerprint": self.fingerprint,
            "loaded_at": self.loaded_at.isoformat(timespec="seconds"),
            "loaded": [
                {
                    "name": a.manifest.name,
                    "command": a.manifest.command,
                    "version": a.manifest.version,
                    "builtin": a.builtin,
                }
                for a in sorted(self.agents.values(), key=lambda a: a.manifest.name)
            ],
            "quarantined": [
                {"name": q.name, "reason": q.reason}
                for q in sorted(self.quarantined.values(), key=lambda q: q.name)
            ],
        }


class Registry:
    def __init__(
        self,
        root: Path,
        builtins: Iterable[tuple[Manifest, Agent]],
        context_factory: ContextFactory,
        commit: str = "unknown",
    ) -> None:
        self.root = root
        self.builtins = list(builtins)
        self.context_factory = context_factory
        self.commit = commit
        self.current = AgentSet(agents={}, quarantined={}, fingerprint="empty")
        self.current.idle.set()
        self._lock = asyncio.Lock()
        self._generation = 0

    @asynccontextmanager
    async def use(self) -> AsyncIterator[AgentSet]:
        """Hold the set in service for one message: a reload waits for it to finish."""
        agents = self.current
        agents.in_flight += 1
        agents.idle.clear()
        try:
            yield agents
        finally:
            agents.in_flight -= 1
            if agents.in_flight == 0:
                agents.idle.set()

    async def reload(self) -> AgentSet:
        async with self._lock:
            new = await self._build(self.root, self.commit)
            old, self.current = self.current, new
        asyncio.get_running_loop().create_task(self._retire(old))
        return new

    async def stage(self, root: Path, commit: str) -> AgentSet:
        """Load the agents under `root` beside the set in service, without serving them: a
        deploy checks the new set first, then `promote`s it or `discard`s it."""
        async with self._lock:
            return await self._build(root, commit)

    async def promote(self, staged: AgentSet) -> None:
        """Put a staged set in service, in one assignment; later reloads read its folder."""
        async with self._lock:
            old, self.current = self.current, staged
            self.root, self.commit = staged.root, staged.commit
        asyncio.get_running_loop().create_task(self._retire(old))

    async def discard(self, staged: AgentSet) -> None:
        await self._retire(staged)

    async def close(self) -> None:
        async with self._lock:
            await self._retire(self.current)

    async def _retire(self, old: AgentSet) -> None:
        try:
            await asyncio.wait_for(old.idle.wait(), timeout=60)
        except TimeoutError:
            log.warning(
                "agents of set %s still busy after 60 s; deactivating anyway", old.fingerprint
            )
        for loaded in old.agents.values():
            try:
                await asyncio.wait_for(loaded.agent.deactivate(), ACTIVATE_TIMEOUT)
            except Exception:  # a broken deactivate must not stop the others
                log.exception("agent %s failed to deactivate", loaded.manifest.name)
        for module in old.modules:
            sys.modules.pop(module, None)

    async def _build(self, root: Path, commit: str) -> AgentSet:
        self._generation += 1
        agents: dict[str, LoadedAgent] = {}
        quarantined: dict[str, Quarantined] = {}
        modules: list[str] = []
        for manifest, agent in self.builtins:
            ctx = self.context_factory(manifest.name, frozenset(manifest.permissions))
            agents[manifest.name] = LoadedAgent(manifest, agent, ctx, builtin=True)

        folders = (
            sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))
            if root.is_dir()
            else []
        )
        fingerprint = _fingerprint(folders, commit)
        candidates: list[tuple[Manifest, Path]] = []
        for folder in folders:
            try:
                candidates.append((load_manifest(folder), folder))
            except ManifestError as exc:
                quarantined[folder.name] = Quarantined(folder.name, str(exc))

        commands = {a.manifest.command: a.manifest.name for a in agents.values()}
        # On a command clash the agent already in service keeps it; the newcomer is refused.
        serving = self.current.agents
        candidates.sort(key=lambda pair: (pair[0].name not in serving, pair[0].name))
        for manifest, folder in candidates:
            taken = commands.get(manifest.command)
            if taken is not None or manifest.command in RESERVED_COMMANDS:
                quarantined[manifest.name] = Quarantined(
                    manifest.name, f"/{manifest.command} is already the command of {taken}"
                )
                continue
            # Unique per build, so retiring the old set never removes the new set's modules.
            module_name = f"{MODULE_PREFIX}.{manifest.name}_g{self._generation}"
            try:
                agent = _instantiate(_import(folder / "agent.py", module_name), manifest)
                modules.append(module_name)
                ctx = self.context_factory(manifest.name, frozenset(manifest.permissions))
                await asyncio.wait_for(agent.activate(ctx), ACTIVATE_TIMEOUT)
            except Exception as exc:  # the agent sandbox's edge: whatever it raised
                sys.modules.pop(module_name, None)
                quarantined[manifest.name] = Quarantined(
                    manifest.name,
                    _reason(exc),
                    "".join(traceback.format_exception(exc)),
                )
                continue
            agents[manifest.name] = LoadedAgent(manifest, agent, ctx)
            commands[manifest.command] = manifest.name
        new = AgentSet(agents, quarantined, fingerprint, modules, root=root, commit=commit)
        new.idle.set()
        for q in quarantined.values():
            log.warning("agent %s quarantined: %s", q.name, q.reason)
        return new


class AgentLoadError(Exception):
    pass


def _import(path: Path, module_name: str) -> ModuleType:
    if not path.is_file():
        raise AgentLoadError("agent.py is missing")
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise AgentLoadError(f"cannot import {path}")
    if MODULE_PREFIX not in sys.modules:
        sys.modules[MODULE_PREFIX] = ModuleType(MODULE_PREFIX)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def _instantiate(module: ModuleType, manifest: Manifest) -> Agent:
    classes = [
        obj
        for obj in vars(module).values()
        if inspect.isclass(obj)
        and issubclass(obj, Agent)
        and obj is not Agent
        and obj.__module__ == module.__name__
    ]
    if len(classes) != 1:
        raise AgentLoadError(f"agent.py must define one Agent subclass, found {len(classes)}")
    cls = classes[0]
    for attribute in ("name", "command"):
        declared = getattr(cls, attribute)
        if declared and declared != getattr(manifest, attribute):
            raise AgentLoadError(
                f"the manifest says {attribute} {getattr(manifest, attribute)!r}"
                f" but {cls.__name__} says {declared!r}"
            )
    if inspect.iscoroutinefunction(cls.handle) is False:
        raise AgentLoadError(f"{cls.__name__}.handle must be `async def`")
    return cls()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, SyntaxError):
        return f"syntax error in {Path(exc.filename or '?').name} line {exc.lineno}: {exc.msg}"
    if isinstance(exc, TimeoutError):
        return f"activate took longer than {ACTIVATE_TIMEOUT:.0f} s"
    return f"{type(exc).__name__}: {exc}"


def _fingerprint(folders: list[Path], commit: str) -> str:
    digest = hashlib.sha256(commit.encode())
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(folder.parent)).encode())
                digest.update(path.read_bytes())
    return f"{commit[:12]}-{digest.hexdigest()[:16]}"
