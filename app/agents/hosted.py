"""The core's stand-in for a dynamic agent: an `Agent` whose every method is a request to
its host process (`app.agents.process`), started again after a backoff when it dies.

A call whose host failed gives the person one line; the next call starts a new host (after
`BACKOFF`), activated again. `MAX_CRASHES` within `CRASH_WINDOW` seconds quarantine the agent
for good (until the next load), with the reason. Capability calls from the host go to its
`Broker`, which checks the grant. `HostLauncher` is the registry's launcher in a Persais
process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.agents import metering, sdk
from app.agents.base import Agent, AgentContext, Message, Reply
from app.agents.jail import Jail
from app.agents.loading import AgentLoadError
from app.agents.manifest import Manifest
from app.agents.process import AgentFailed, HostError, HostProcess, Serve

__all__ = ["AgentFailed", "HostError", "HostLauncher", "HostedAgent", "failure_text"]

log = logging.getLogger(__name__)

LOAD_TIMEOUT = 10.0  # the deadline of load and activate
MAX_CRASHES = 3
CRASH_WINDOW = 300.0
BACKOFF = (0.0, 1.0, 5.0)  # before the 1st, 2nd, 3rd restart


class AgentQuarantined(AgentFailed):
    pass


class HostedAgent(Agent):
    """An agent that lives in a host process. The core calls it like any agent."""

    def __init__(
        self, manifest: Manifest, folder: Path, jail: Jail, serve: Serve,
        *, on_quarantine: Callable[[str, str], None] | None = None,
    ) -> None:  # fmt: skip
        self.manifest = manifest
        self.folder = folder
        self.jail = jail
        self.serve = serve
        self.on_quarantine = on_quarantine
        self.host: HostProcess | None = None
        self.activated = False
        self.crashes: list[float] = []
        self.quarantine_reason = ""
        self.timeout = 30.0  # a call's deadline; the launcher sets it from the settings
        self._starting = asyncio.Lock()

    @property
    def sandboxed(self) -> bool:
        return self.jail.sandboxed

    async def start(self) -> None:
        """Start the host and import the agent's code in it (a failure is the load's)."""
        host = HostProcess(self.manifest.name, self.jail, self.folder, self.serve)
        self.host = host
        await host.start()
        try:
            await host.request(
                "load", LOAD_TIMEOUT, name=self.manifest.name, command=self.manifest.command,
                permissions=sorted(self.manifest.permissions.names()),
            )  # fmt: skip
        except HostError as exc:
            await host.stop()
            raise AgentLoadError(str(exc), exc.trace) from None
        except BaseException:  # cancelled (a stop during the start) or broken: no host left
            await host.abort("its start was interrupted")
            raise

    async def _ready(self) -> HostProcess:
        """The host, started again (after a backoff) if the last one died."""
        if self.quarantine_reason:
            raise AgentQuarantined(f"quarantined: {self.quarantine_reason}")
        async with self._starting:
            host = self.host
            if host is not None and not host.death:
                return host
            if host is not None:
                self._crashed(host.death)
            wait = BACKOFF[min(len(self.crashes), len(BACKOFF)) - 1] if self.crashes else 0.0
            since = time.monotonic() - self.crashes[-1] if self.crashes else wait
            if since < wait:
                raise AgentFailed(f"restarting after a crash; try again in {wait - since:.0f} s")
            try:
                await self.start()
                if self.activated:
                    await self._ask("activate", LOAD_TIMEOUT)
            except (AgentFailed, AgentLoadError, HostError) as exc:
                if self.host is not None and not self.host.death:
                    self.host.kill(f"failed to start again: {exc}")
                self._crashed(f"failed to start again: {exc}")
                raise AgentFailed(f"could not be started again: {exc}") from None
            assert self.host is not None
            return self.host

    def _crashed(self, why: str) -> None:
        now = time.monotonic()
        self.crashes = [t for t in self.crashes if now - t < CRASH_WINDOW] + [now]
        if len(self.crashes) >= MAX_CRASHES and not self.quarantine_reason:
            self.quarantine_reason = (
                f"its host failed {len(self.crashes)} times in {CRASH_WINDOW / 60:.0f} min"
                f" (last: {why})"
            )
            log.warning("agent %s quarantined: %s", self.manifest.name, self.quarantine_reason)
            if self.on_quarantine is not None:
                self.on_quarantine(self.manifest.name, self.quarantine_reason)
        if self.host is not None and self.host.death == why:
            self.host = None

    async def _ask(self, op: str, deadline: float, **args: Any) -> Any:
        host = self.host if self.host is not None and not self.host.death else await self._ready()
        try:
            return await host.request(op, deadline, **args)
        except AgentFailed:
            if host is self.host:
                self._crashed(host.death)
            raise

    async def activate(self, ctx: AgentContext) -> None:
        try:
            await self._ask("activate", LOAD_TIMEOUT)
        except HostError as exc:
            raise AgentLoadError(str(exc), exc.trace) from None
        self.activated = True

    async def deactivate(self) -> None:
        host, self.host = self.host, None
        if host is None or host.death:
            return
        with contextlib.suppress(AgentFailed, HostError):
            await host.request("deactivate", LOAD_TIMEOUT)
        await host.stop()

    async def handle(self, message: Message, ctx: AgentContext) -> Reply | str:
        if message.conversation in metering.UNCOUNTED:
            return await self.call("handle", message=sdk.message_to_json(message))
        started = time.monotonic()
        ok = False
        try:
            reply = await self.call("handle", message=sdk.message_to_json(message))
            ok = True
            return reply
        finally:  # a timeout (cancelled from outside) counts as an error too
            metering.observe(self.manifest.name, ok=ok, seconds=time.monotonic() - started)

    async def on_choice(self, question: str, choice: str, ctx: AgentContext) -> Reply | str:
        return await self.call("on_choice", question=question, choice=choice)

    async def call(self, op: str, **args: Any) -> Reply:
        answer = await self._ask(op, self.timeout, **args)
        try:
            return sdk.reply_from_json(answer)
        except sdk.BadReply as exc:
            raise AgentFailed(f"gave a bad reply: {exc}") from None


class HostLauncher:
    """Starts each dynamic agent in a host of its own (the registry's launcher in a Persais
    process). `broker(manifest)` gives the capability server for an agent's grants."""

    def __init__(
        self, jail: Jail, broker: Callable[[Manifest], Serve], *, timeout: float = 30.0,
        require_sandbox: bool = False,
    ) -> None:  # fmt: skip
        self.jail = jail
        self.broker = broker
        self.timeout = timeout
        self.require_sandbox = require_sandbox

    @property
    def sandboxed(self) -> bool:
        return self.jail.sandboxed

    async def __call__(
        self, manifest: Manifest, folder: Path, on_quarantine: Callable[[str, str], None]
    ) -> Agent:
        if not self.jail.sandboxed and self.require_sandbox:
            raise AgentLoadError(
                "refused: bubblewrap is missing and PERSAIS_REQUIRE_SANDBOX is on"
                " (unsandboxed agents are not run); see `persais doctor`"
            )
        agent = HostedAgent(
            manifest, folder, self.jail, self.broker(manifest), on_quarantine=on_quarantine
        )
        agent.timeout = self.timeout
        await agent.start()
        return agent


def failure_text(exc: BaseException) -> str:
    """One line for the person about an agent that failed them."""
    if isinstance(exc, TimeoutError):
        return "took too long"
    if isinstance(exc, AgentFailed | HostError):
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        return first[:300]
    return repr(exc)[:300]
