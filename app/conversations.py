"""The conversational half of a process: the agent registry and the orchestrator.

Built only where conversations are handled (the worker, `persais chat`): the web process
that takes webhooks never imports LangGraph or the agents.
"""

from __future__ import annotations

import logging
from typing import Any

from psycopg_pool import AsyncConnectionPool

from app import audit, inbox
from app.agents.base import AgentContext
from app.agents.builtin import builtin_agents
from app.agents.capabilities import Broker
from app.agents.hosted import HostLauncher
from app.agents.jail import Jail, Limits, find_bwrap
from app.agents.registry import AgentSet, Registry
from app.agents.state import PostgresState
from app.costs.books import Costs
from app.deploy.service import Deployments
from app.forge import drift, pull_links
from app.forge.local import LocalForge
from app.mechanic_jobs.service import MechanicJobs
from app.memory.service import Memory
from app.orchestrator import approvals
from app.orchestrator.orchestrator import Orchestrator
from app.settings import CHECKOUT_ROOT, Settings
from app.version import BuildInfo
from app.worker.queue import DeliveryQueue


class Conversations:
    def __init__(
        self,
        settings: Settings,
        pool: AsyncConnectionPool,
        conninfo: str,
        build: BuildInfo,
        *,
        queue: DeliveryQueue | None = None,
    ) -> None:
        self.pool = pool
        self.build = build
        self._queued = queue is not None
        self.costs = Costs.of(settings, pool)  # what the model cost today, for /status
        # The local forge's repository, whose drift from the checkout /status shows.
        self.local_forge = (
            None if settings.home_repo else LocalForge(pool, settings.home, CHECKOUT_ROOT).bare
        )
        self.jail = Jail(find_bwrap(), limits=Limits(memory_mb=settings.agent_memory_mb))
        state = PostgresState(pool)
        launcher = HostLauncher(
            self.jail,
            lambda manifest: Broker(manifest.name, manifest.permissions, state).serve,
            timeout=settings.agent_timeout_seconds,
            require_sandbox=settings.require_sandbox,
        )
        self.registry = Registry(
            settings.resolved_agents_dir(), builtin_agents(), self._context, launcher,
            commit=build.commit,
        )  # fmt: skip
        self.graph_pool = Orchestrator.graph_pool_for(conninfo)
        self.orchestrator = Orchestrator(
            pool, self.graph_pool, self.registry,
            approval_timeout=settings.approval_timeout_seconds,
            shown_link=lambda link: pull_links.shown(link, pull_links.console_base(settings)),
        )  # fmt: skip
        self.memory = Memory(settings, pool, defer=queue.defer_index if queue else None)
        self.mechanic = MechanicJobs(
            settings, pool, defer=queue.defer_mechanic if queue else None,
            ask=self.orchestrator.ask, memory=self.memory,
        )  # fmt: skip
        self.deployments = Deployments(
            settings, pool, self.registry, defer=queue.defer_deploy if queue else None,
            ask=self.orchestrator.ask,
            build_commit=build.commit if build.commit != "unknown" else None,
            memory=self.memory,
        )  # fmt: skip

    def _context(self, agent: str, permissions: frozenset[str]) -> AgentContext:
        capabilities: dict[str, Any] = {
            "registry": self, "status": self.status, "mechanic": self.mechanic,
            "deploy": self.deployments, "memory": self.memory,
        }  # fmt: skip
        return AgentContext(agent, permissions, logging.getLogger(f"agent.{agent}"), capabilities)

    # The "registry" capability: built-ins see the set in service and may reload it.
    @property
    def current(self) -> AgentSet:
        return self.registry.current

    async def start(self) -> None:
        try:
            await self.graph_pool.open(wait=True, timeout=15)
            await self.orchestrator.start()
            # dynamic/ at the release this process should run, before it serves anything.
            running = await self.deployments.here.boot()
            self.registry.root = running.agents
            self.registry.commit = running.sha or self.build.commit
            await self.reload()
        except BaseException:  # the next use starts afresh: leave nothing of this one open
            await self.stop()
            raise
        try:  # the index follows the home repository; a start is a good time to catch up
            if self._queued:
                await self.memory.request_index()
        except Exception:  # memory is not worth failing a start over
            logging.getLogger(__name__).exception("could not queue the index of the home repo")

    async def stop(self) -> None:
        await self.registry.close()
        await self.graph_pool.close()

    async def reload(self) -> AgentSet:
        agents = await self.registry.reload()
        release = self.deployments.here.running.sha
        async with self.pool.connection() as conn:
            await audit.record(
                conn, actor="persais", action="agents.loaded", subject=agents.fingerprint,
                detail={"loaded": sorted(agents.agents), "release": release},
            )  # fmt: skip
            for q in agents.quarantined.values():
                await audit.record(
                    conn, actor="persais", action="agent.quarantined", subject=f"agent:{q.name}",
                    detail={"reason": q.reason, "traceback": q.traceback[-2000:]},
                )  # fmt: skip
        return agents

    async def status(self) -> dict[str, Any]:
        agents = self.registry.current
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT id, messages, mode FROM conversations ORDER BY last_at DESC LIMIT 5"
            )
            recent = [
                f"{cid} ({n} messages{', mode ' + mode if mode else ''})"
                for cid, n, mode in await cur.fetchall()
            ]
            count = await (await conn.execute("SELECT count(*) FROM conversations")).fetchone()
            return {
                "version": f"{self.build.package} ({self.build.commit[:12]})",
                "agents": f"{len(agents.agents)} loaded, {len(agents.quarantined)} quarantined",
                "sandbox": self.jail.describe(),
                "conversations": count[0] if count else 0,
                "recent": recent,
                "inbox": await inbox.open_counts(conn),
                "pending_approvals": await approvals.pending_count(conn),
                "spend": await self.costs.status_line(),
                "forge": (
                    await drift.status_line(CHECKOUT_ROOT, self.local_forge)
                    if self.local_forge
                    else None
                ),
            }
