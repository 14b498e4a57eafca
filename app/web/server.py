"""The web process: routes wired to the ingress, health and metrics, over one `Runtime`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from app import inbox
from app.agents import metering
from app.console.site import mount as console_mount
from app.console.web import Console
from app.db import migrate
from app.intake import Intake
from app.runtime import Runtime
from app.version import build_info
from app.web.body import BodyBudget
from app.web.health import Readiness, health
from app.web.metrics import TimingMiddleware
from app.web.webhooks import WebhookIngress


def create_app(runtime: Runtime, *, database_kind: str, with_worker: bool) -> Starlette:
    settings = runtime.settings
    ingress = WebhookIngress(
        intake=Intake(pool=runtime.pool, queue=runtime.queue),
        metrics=runtime.metrics,
        github_secret=(
            settings.github_webhook_secret.get_secret_value().encode()
            if settings.github_webhook_secret
            else None
        ),
        telegram_secret=(
            settings.telegram_webhook_secret.get_secret_value().encode()
            if settings.telegram_webhook_secret
            else None
        ),
        telegram_bot_id=settings.telegram_bot_id,
        unverified_bodies=BodyBudget(settings.unverified_body_bytes),
    )
    readiness = Readiness(
        pool=runtime.pool,
        database_kind=database_kind,
        expected_migrations=[m.version for m in migrate.discover()],
        build=build_info(settings.git_commit),
        worker_running=runtime.worker_running if with_worker else None,
        agents=runtime.agents_summary,
        release=runtime.release_summary,
        warm_up=runtime.warm_up.summary if with_worker else None,
    )

    async def metrics(request: Request) -> Response:
        async with runtime.pool.connection() as conn:
            for status, count in (await inbox.open_counts(conn)).items():
                runtime.metrics.inbox_depth.labels(status).set(count)
        # The web metrics, then each agent's answers, errors and time (app.agents.metering).
        text = generate_latest(runtime.metrics.registry) + generate_latest(metering.REGISTRY)
        return Response(text, media_type=CONTENT_TYPE_LATEST)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await runtime.start(worker=with_worker)
        try:
            yield
        finally:
            await runtime.stop()

    async def front(request: Request) -> Response:
        return RedirectResponse("/console/", status_code=307)

    console = Console(
        pool=runtime.pool, settings=settings, runtime=runtime, readiness=readiness,
        public_url=settings.public_url,
    )  # fmt: skip
    routes = [
        Route("/", front, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/ready", readiness.ready, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/webhooks/github", ingress.github, methods=["POST"]),
        Route("/webhooks/telegram", ingress.telegram, methods=["POST"]),
        Route("/console", front, methods=["GET"]),
    ]
    return Starlette(
        routes=[*routes, console_mount(console)],
        lifespan=lifespan,
        middleware=[
            Middleware(
                TimingMiddleware,
                metrics=runtime.metrics,
                routes={route.path for route in routes},
            )
        ],
    )


def readiness_app(runtime: Runtime, *, database_kind: str) -> Starlette:
    """`persais worker --ready-port`: only /health and /ready, so a deploy can ask a worker
    machine which release it runs and whether its agents loaded."""
    readiness = Readiness(
        pool=runtime.pool,
        database_kind=database_kind,
        expected_migrations=[m.version for m in migrate.discover()],
        build=build_info(runtime.settings.git_commit),
        worker_running=runtime.worker_running,
        agents=runtime.agents_summary,
        release=runtime.release_summary,
        warm_up=runtime.warm_up.summary,
    )
    return Starlette(routes=[Route("/health", health), Route("/ready", readiness.ready)])
