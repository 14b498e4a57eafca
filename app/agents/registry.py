"""The agent registry: discover, load in isolation, quarantine, and swap atomically.

A load builds a complete new `AgentSet` beside the one in service: every manifest is
checked before anything of the agent runs, each dynamic agent is started by the launcher
(in production a sandboxed host process of its own, `app.agents.hosted`; the registry never
imports an agent's code), and anything that fails (bad manifest, syntax error, failing
import, an exception at import or at `activate`, a command taken twice, a class that
disagrees with its manifest) is put in quarantine with its reason and traceback. Then the
new set replaces the old in one assignment. The old set is deactivated (its hosts stopped)
once the messages it was handling have finished.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from app.agents.base import Agent, AgentContext, ContextFactory
from app.agents.loading import reason
from app.agents.manifest import RESERVED_COMMANDS, Manifest, ManifestError, load_manifest

log = logging.getLogger(__name__)
ACTIVATE_TIMEOUT = 10.0
STARTING_AT_ONCE = 4  # hosts started in parallel by one load

# (manifest, folder, on_quarantine) -> a started agent. `on_quarantine(name, reason)` is for
# an agent that fails for good later, while in service.
Launcher = Callable[[Manifest, Path, Callable[[str, str], None]], Awaitable[Agent]]


@dataclass(frozen=True)
class LoadedAgent:
    manifest: Manifest
    agent: Agent
    context: AgentContext
    builtin: bool = False
    digest: str = ""  # its folder's content: an unchanged agent keeps its host across sets


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
    root: Path = Path()  # the folder it was loaded from
    commit: str = "unknown"
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    in_flight: int = 0
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    sandboxed: bool | None = None  # None: no dynamic agent loaded

    def quarantine(self, name: str, reason: str) -> None:
        """An agent in service that failed for good (its host kept crashing)."""
        self.agents.pop(name, None)
        self.quarantined[name] = Quarantined(name, reason)

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
            "sandboxed": self.sandboxed,
        }


class Registry:
    def __init__(
        self,
        root: Path,
        builtins: Iterable[tuple[Manifest, Agent]],
        context_factory: ContextFactory,
        launch: Launcher,
        commit: str = "unknown",
    ) -> None:
        self.root = root
        self.builtins = list(builtins)
        self.context_factory = context_factory
        self.launch = launch
        # Whether the launcher's agents run in a sandbox (HostLauncher says; others do not).
        self.sandboxed = bool(getattr(launch, "sandboxed", False))
        self.commit = commit
        self.current = AgentSet(agents={}, quarantined={}, fingerprint="empty")
        self.current.idle.set()
        self._lock = asyncio.Lock()
        self._retiring: set[asyncio.Task[None]] = set()

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
        self._retire_later(old, keep=new)
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
        self._retire_later(old, keep=staged)

    async def discard(self, staged: AgentSet) -> None:
        await self._retire(staged, keep=self.current)

    async def close(self) -> None:
        """Stop every host: the set in service and the sets still retiring."""
        await asyncio.gather(*self._retiring, return_exceptions=True)
        async with self._lock:
            await self._retire(self.current, keep=None)

    def _retire_later(self, old: AgentSet, keep: AgentSet) -> None:
        task = asyncio.get_running_loop().create_task(self._retire(old, keep))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    def _quarantine(self, name: str, reason: str) -> None:
        """An agent in service failed for good (its host kept crashing)."""
        self.current.quarantine(name, reason)

    async def _retire(self, old: AgentSet, keep: AgentSet | None) -> None:
        """Deactivate `old`'s agents once its messages are done, but for those `keep` (the
        set that replaces it) carried over unchanged: their hosts go on serving."""
        try:
            await asyncio.wait_for(old.idle.wait(), timeout=60)
        except TimeoutError:
            log.warning(
                "agents of set %s still busy after 60 s; deactivating anyway", old.fingerprint
            )
        carried = {id(a.agent) for a in keep.agents.values()} if keep is not None else set()
        for loaded in old.agents.values():
            if id(loaded.agent) in carried:
                continue
            try:
                await asyncio.wait_for(loaded.agent.deactivate(), ACTIVATE_TIMEOUT)
            except Exception:  # a broken deactivate must not stop the others
                log.exception("agent %s failed to deactivate", loaded.manifest.name)

    async def _build(self, root: Path, commit: str) -> AgentSet:
        agents: dict[str, LoadedAgent] = {}
        quarantined: dict[str, Quarantined] = {}
        for manifest, agent in self.builtins:
            ctx = self.context_factory(manifest.name, frozenset(agent.permissions))
            agents[manifest.name] = LoadedAgent(manifest, agent, ctx, builtin=True)

        folders = (
            sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))
            if root.is_dir()
            else []
        )
        new = AgentSet(agents, quarantined, _fingerprint(folders, commit), root=root, commit=commit)
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
        chosen: list[tuple[Manifest, Path]] = []
        for manifest, folder in candidates:
            taken = commands.get(manifest.command)
            if taken is not None or manifest.command in RESERVED_COMMANDS:
                quarantined[manifest.name] = Quarantined(
                    manifest.name, f"/{manifest.command} is already the command of {taken}"
                )
                continue
            commands[manifest.command] = manifest.name
            chosen.append((manifest, folder))
        gate = asyncio.Semaphore(STARTING_AT_ONCE)

        async def start(manifest: Manifest, folder: Path) -> None:
            digest = _digest(folder)
            serving = self.current.agents.get(manifest.name)
            if serving is not None and not serving.builtin and serving.digest == digest:
                # Unchanged files and grants: its running host serves the new set too, so a
                # deploy starts only the agents it changes.
                agents[manifest.name] = serving
                return
            async with gate:
                loaded = await self._start(manifest, folder, digest)
            if isinstance(loaded, Quarantined):
                quarantined[manifest.name] = loaded
            else:
                agents[manifest.name] = loaded

        try:
            await asyncio.gather(*(start(m, f) for m, f in chosen))
        except BaseException:  # a stop cancelled this start: stop the hosts it started
            new.idle.set()  # nothing was served by this set
            await self._retire(new, keep=self.current)
            raise
        if chosen:
            new.sandboxed = self.sandboxed
        new.idle.set()
        for q in quarantined.values():
            log.warning("agent %s quarantined: %s", q.name, q.reason)
        return new

    async def _start(
        self, manifest: Manifest, folder: Path, digest: str
    ) -> LoadedAgent | Quarantined:
        ctx = self.context_factory(manifest.name, manifest.permissions.names())
        agent: Agent | None = None
        try:
            agent = await self.launch(manifest, folder, self._quarantine)
            await asyncio.wait_for(agent.activate(ctx), ACTIVATE_TIMEOUT)
        except asyncio.CancelledError:  # a stop during the start: leave no host behind
            if agent is not None:
                await _stop_quietly(agent, manifest.name)
            raise
        except Exception as exc:  # the agent sandbox's edge: whatever it raised
            if agent is not None:
                try:
                    await agent.deactivate()
                except Exception:  # its host is stopped regardless
                    log.exception("agent %s failed to stop after a failed load", manifest.name)
            trace = getattr(exc, "trace", "") or "".join(traceback.format_exception(exc))
            return Quarantined(manifest.name, reason(exc, ACTIVATE_TIMEOUT), trace)
        return LoadedAgent(manifest, agent, ctx, digest=digest)


async def _stop_quietly(agent: Agent, name: str) -> None:
    try:
        await asyncio.wait_for(agent.deactivate(), ACTIVATE_TIMEOUT)
    except Exception:  # its host is stopped regardless (the host's own deadline kills it)
        log.exception("agent %s failed to stop after an interrupted start", name)


def _digest(folder: Path) -> str:
    """What an agent is: every file of its folder, the manifest (and so its grants) too."""
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(folder)).encode() + b"\0")
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _fingerprint(folders: list[Path], commit: str) -> str:
    digest = hashlib.sha256(commit.encode())
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(folder.parent)).encode())
                digest.update(path.read_bytes())
    return f"{commit[:12]}-{digest.hexdigest()[:16]}"
