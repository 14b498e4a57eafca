"""Prometheus metrics: a registry per process, and an ASGI middleware timing every request."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.received = Counter(
            "persais_deliveries_received", "Verified deliveries stored in the inbox",
            ["source"], registry=r,
        )  # fmt: skip
        self.duplicates = Counter(
            "persais_deliveries_duplicate", "Deliveries whose id was already in the inbox",
            ["source"], registry=r,
        )  # fmt: skip
        self.refused = Counter(
            "persais_deliveries_refused", "Webhook requests refused, by reason",
            ["source", "reason"], registry=r,
        )  # fmt: skip
        self.dropped = Counter(
            "persais_deliveries_dropped", "Deliveries acknowledged and dropped unread, by reason",
            ["source", "reason"], registry=r,
        )  # fmt: skip
        self.processed = Counter(
            "persais_deliveries_processed", "Deliveries taken by this process's worker, by outcome",
            ["source", "outcome"], registry=r,
        )  # fmt: skip
        self.inbox_depth = Gauge(
            "persais_inbox_depth", "Deliveries waiting (received), to retry (failed), or dead",
            ["status"], registry=r,
        )  # fmt: skip
        self.latency = Histogram(
            "persais_http_request_duration_seconds", "Time to answer an HTTP request",
            ["route", "method", "status"], registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
        )  # fmt: skip
        self.retention_removed = Counter(
            "persais_retention_removed", "Rows (release folders) retention removed, by what",
            ["what"], registry=r,
        )  # fmt: skip
        self.retention_failed = Counter(
            "persais_retention_failed", "Retention steps that failed, by what",
            ["what"], registry=r,
        )  # fmt: skip

    def count_retention(self, outcomes: Iterable[Any]) -> None:
        """Count one retention run (`app.retention.Outcome`s) in this process's registry."""
        for outcome in outcomes:
            if outcome.error is not None:
                self.retention_failed.labels(outcome.step).inc()
            else:
                self.retention_removed.labels(outcome.step).inc(outcome.removed)


class TimingMiddleware:
    """Observe each request's answer time, labelled by route path (not raw URL)."""

    def __init__(self, app: ASGIApp, metrics: Metrics, routes: set[str]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            path: Any = scope.get("path", "")
            route = (
                path
                if path in self.routes
                else "/console"
                if path.startswith("/console/")
                else "other"
            )
            self.metrics.latency.labels(route, scope.get("method", "?"), str(status)).observe(
                time.perf_counter() - start
            )
