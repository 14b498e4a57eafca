"""`/health` (the process lives) and `/ready` (it can do its work)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from psycopg_pool import AsyncConnectionPool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from app.version import BuildInfo


async def health(request: Request) -> Response:
    return PlainTextResponse("ok")


@dataclass
class Readiness:
    pool: AsyncConnectionPool
    database_kind: str
    expected_migrations: list[int]
    build: BuildInfo
    worker_running: Callable[[], bool] | None  # None: this process runs no worker
    agents: Callable[[], dict[str, object]] | None = None
    release: Callable[[], dict[str, object]] | None = None
    # The worker's warm-up (app/warm_up.py): 200 only once it finished, so the first
    # delivery after it is answered at once (a failed one finishes too: the process serves).
    warm_up: Callable[[], dict[str, object]] | None = None

    async def ready(self, request: Request) -> Response:
        report = await self.report()
        return JSONResponse(report, status_code=200 if report["ready"] else 503)

    async def report(self) -> dict[str, Any]:
        """Each part's state and `ready`; `/` shows the same report to a person."""
        report: dict[str, Any] = {"version": self.build.as_dict()}
        database: dict[str, Any] = {"kind": self.database_kind}
        applied: list[int] = []
        try:
            async with asyncio.timeout(2), self.pool.connection() as conn:
                cur = await conn.execute("SELECT version FROM schema_migrations ORDER BY version")
                applied = [row[0] for row in await cur.fetchall()]
            database["ok"] = True
        except Exception as exc:  # any failure to reach the database means "not ready"
            database.update(ok=False, error=type(exc).__name__)
        pending = [v for v in self.expected_migrations if v not in applied]
        report["database"] = database
        report["migrations"] = {"applied": applied, "pending": pending, "ok": not pending}
        if self.worker_running is None:
            report["worker"] = {"mode": "separate process", "ok": True}
        else:
            running = self.worker_running()
            report["worker"] = {"mode": "in process", "running": running, "ok": running}
        if self.agents is not None:
            report["agents"] = self.agents()
        if self.release is not None:
            report["release"] = self.release()
        ok = database["ok"] and not pending and report["worker"]["ok"]
        if self.warm_up is not None:
            report["warm-up"] = self.warm_up()
            ok = ok and bool(report["warm-up"]["finished"])
        report["ready"] = ok
        return report
