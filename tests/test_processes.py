"""Whole `persais` processes: the embedded default, SIGKILL, and workers competing."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from app.settings import Settings
from tests.support.processes import free_port, persais, persais_env, wait_ready
from tests.support.server import client_for, running_server
from tests.support.waiting import wait_for
from tests.support.webhooks import example, post_github

pytestmark = pytest.mark.slow


def postgres_running_on(pgdata: Path) -> bool:
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if proc.info["name"] == "postgres" and str(pgdata) in cmdline:
            return True
    return False


def test_the_embedded_default_serves_is_shared_and_stops_with_its_last_process(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    env = persais_env(home)
    port = free_port()
    with persais(["serve", "--port", str(port)], env, tmp_path, tmp_path / "serve.log") as serve:
        ready = wait_ready(f"http://127.0.0.1:{port}", serve)
        assert ready["database"] == {"kind": "embedded", "ok": True}
        assert ready["worker"]["running"] is True
        assert ready["migrations"]["pending"] == []
        assert ready["version"]["package"] == "0.1.0"

        body = example("ping")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            assert post_github(client, "ping", body, delivery="emb-1").status_code == 202

        # A second process on the same PERSAIS_HOME joins the same server.
        def listed() -> bool:
            out = subprocess.run(
                [sys.executable, "-m", "app", "inbox", "list"],
                env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            return out.returncode == 0 and "processed" in out.stdout and "emb-1" in out.stdout

        wait_for(listed, 30, "the delivery shows as processed from a second process")
        assert postgres_running_on(home / "pgdata")  # the second process left it running
    assert serve.returncode == 0, (tmp_path / "serve.log").read_text()
    wait_for(lambda: not postgres_running_on(home / "pgdata"), 15, "postgres stopped")


def test_a_delivery_answered_before_a_sigkill_is_processed_after_restart(
    tmp_path: Path, database: str, sql
) -> None:
    env = persais_env(tmp_path / "home", database)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    # Web only: the delivery is answered and stored, and nothing has processed it yet.
    with persais(["serve", "--port", str(port), "--no-worker"], env, tmp_path, log) as first:
        wait_ready(url, first)
        with httpx.Client(base_url=url) as client:
            response = post_github(client, "installation", example("installation", "created"))
            assert response.status_code == 202
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert sql("SELECT status FROM inbox") == [("received",)]

    with persais(["serve", "--port", str(port)], env, tmp_path, log) as second:
        wait_ready(url, second)
        wait_for(lambda: sql("SELECT 1 FROM inbox WHERE status = 'processed'"), 30)
    assert sql("SELECT handled_count FROM inbox") == [(1,)]
    assert sql("SELECT count(*) FROM installations") == [(1,)]


def test_two_workers_share_500_deliveries_and_process_each_once(
    tmp_path: Path, database: str, settings: Settings, sql
) -> None:
    env = persais_env(tmp_path / "home", database, PERSAIS_WORKER_CONCURRENCY="8")
    with (
        persais(["worker"], env, tmp_path, tmp_path / "w1.log") as w1,
        persais(["worker"], env, tmp_path, tmp_path / "w2.log") as w2,
        running_server(settings, database, worker=False) as (url, _),
        client_for(url) as client,
    ):
        payload = example("ping")
        for n in range(500):
            assert post_github(client, "ping", payload, delivery=f"d-{n}").status_code == 202
        wait_for(
            lambda: sql("SELECT count(*) FROM inbox WHERE status = 'processed'") == [(500,)],
            120,
            "all 500 processed",
        )
        assert w1.poll() is None
        assert w2.poll() is None
    assert sql("SELECT count(*), min(handled_count), max(handled_count) FROM inbox") == [
        (500, 1, 1)
    ]
    assert sql(  # the deliveries' jobs (not the index run a worker queues at its start)
        "SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'"
        " AND task_name = 'persais.process_delivery'"
    ) == [(500,)]
    workers = sql("SELECT processed_by, count(*) FROM inbox GROUP BY 1")
    assert len(workers) == 2, workers  # both took part


def test_a_worker_answers_ready_with_its_release_for_the_fly_deployer(
    tmp_path: Path, database: str
) -> None:
    env = persais_env(tmp_path / "home", database)
    port = free_port()
    with persais(["worker", "--ready-port", str(port)], env, tmp_path, tmp_path / "w.log") as w:
        wait_ready(f"http://127.0.0.1:{port}", w)

        def synced() -> dict[str, Any] | None:
            # The agents load on the same event loop: /ready may be slow to answer meanwhile.
            try:
                report = httpx.get(f"http://127.0.0.1:{port}/ready", timeout=5).json()
            except httpx.TransportError:
                return None
            return report if report["release"]["source"] != "starting" else None

        report = wait_for(synced, timeout=60)
        assert report["release"]["source"] == "image"
        assert report["release"]["sha"] is None
        assert report["worker"]["running"] is True
        w.send_signal(signal.SIGTERM)
        assert w.wait(timeout=30) == 0, (tmp_path / "w.log").read_text()
