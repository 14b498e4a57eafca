"""`/health`, `/ready` and `/metrics` on the real server."""

from __future__ import annotations

import re

import psycopg
from psycopg import conninfo as pg_conninfo
from psycopg import sql as pg_sql

from app.db import migrate
from app.settings import Settings
from tests.support.server import client_for, running_server
from tests.support.waiting import wait_for
from tests.support.webhooks import example, post_github, post_telegram, telegram_update


def test_ready_reports_every_part_and_the_build(settings: Settings, database: str) -> None:
    with running_server(settings, database) as (url, _), client_for(url) as client:
        assert client.get("/health").text == "ok"
        # 503 while the worker warms up (tests/test_readiness.py), then 200 for good.
        ready = wait_for(lambda: (r := client.get("/ready")).status_code == 200 and r, 60)
        body = ready.json()
        assert body["warm-up"]["finished"] is True
        assert body["warm-up"]["ok"] is True
        assert body["ready"] is True
        assert body["database"]["ok"] is True
        versions = [m.version for m in migrate.discover()]
        assert body["migrations"] == {"applied": versions, "pending": [], "ok": True}
        assert body["worker"] == {"mode": "in process", "running": True, "ok": True}
        assert body["version"]["package"] == "0.1.0"
        assert re.fullmatch(r"[0-9a-f]{40}|unknown", body["version"]["commit"])
        agents = wait_for(lambda: client.get("/ready").json()["agents"].get("loaded"), 20)
        assert {"name": "help", "command": "help", "version": "1.0.0", "builtin": True} in agents
        assert client.get("/ready").json()["agents"]["quarantined"] == []


def test_ready_is_503_while_the_database_is_away_and_recovers(
    settings: Settings, database: str, postgres
) -> None:
    name = pg_conninfo.conninfo_to_dict(database)["dbname"]
    admin = postgres.conninfo_for("postgres")

    def set_allowed(allowed: bool) -> None:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                pg_sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS {}").format(
                    pg_sql.Identifier(str(name)), pg_sql.Literal(allowed)
                )
            )
            if not allowed:
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                    (name,),
                )

    with running_server(settings, database, worker=False) as (url, _), client_for(url) as client:
        assert client.get("/ready").status_code == 200
        set_allowed(False)
        try:
            down = wait_for(lambda: (r := client.get("/ready")).status_code == 503 and r, 20)
            assert down.json()["database"]["ok"] is False
            assert client.get("/health").status_code == 200  # alive, not ready
        finally:
            set_allowed(True)
        wait_for(lambda: client.get("/ready").status_code == 200, 30, "ready again")


def test_ready_is_503_while_a_migration_is_pending(settings: Settings, database: str) -> None:
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("DELETE FROM schema_migrations WHERE version = 3")
    with running_server(settings, database, worker=False) as (url, _), client_for(url) as client:
        ready = client.get("/ready")
        assert ready.status_code == 503
        assert ready.json()["migrations"]["pending"] == [3]


def metric(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            found = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
            if all(found.get(k) == v for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name}{labels} not in /metrics")


def test_metrics_count_deliveries_refusals_depth_and_latency(
    settings: Settings, database: str, sql
) -> None:
    with running_server(settings, database) as (url, _), client_for(url) as client:
        for n in range(3):
            assert (
                post_github(client, "ping", example("ping"), delivery=f"m-{n}").status_code == 202
            )
        post_github(client, "ping", example("ping"), delivery="m-0")  # duplicate
        post_github(client, "ping", example("ping"), secret="forged")
        post_telegram(client, telegram_update(1))
        wait_for(lambda: sql("SELECT count(*) FROM inbox WHERE status = 'received'") == [(0,)])
        wait_for(
            lambda: client.get("/metrics").text.count("persais_deliveries_processed_total") > 0
        )
        text = client.get("/metrics").text
        assert client.get("/metrics").headers["content-type"].startswith("text/plain")

    assert metric(text, "persais_deliveries_received_total", source="github") == 3
    assert metric(text, "persais_deliveries_received_total", source="telegram") == 1
    assert metric(text, "persais_deliveries_duplicate_total", source="github") == 1
    assert (
        metric(text, "persais_deliveries_refused_total", source="github", reason="signature") == 1
    )
    assert metric(text, "persais_inbox_depth", status="dead") == 0
    count = metric(
        text, "persais_http_request_duration_seconds_count",
        route="/webhooks/github", method="POST", status="202",
    )  # fmt: skip
    assert count == 4
    processed = metric(
        text, "persais_deliveries_processed_total", source="github", outcome="processed"
    )
    assert processed == 3
