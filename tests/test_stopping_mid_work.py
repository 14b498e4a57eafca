"""`persais serve` stopped (SIGTERM, as Fly stops a machine) in the middle of work: while its
connection pool opens against a database that does not answer, and while a Mechanic job has
Aider waiting on the model. Each stop ends within the deadline, lets go of what it started,
and the interrupted job runs again after the restart, once. And `persais worker` holds
SIGTERM from its start as `serve` does."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from app.commands.service import SHUTDOWN_DEADLINE
from tests.support.fake_telegram import ADA, text_update
from tests.support.mechanic import REQUEST, routed_reply
from tests.support.processes import free_port, persais, persais_env
from tests.support.stack import HOME_REPO, stack
from tests.support.stalling_proxy import stalling_proxy
from tests.support.waiting import wait_for
from tests.test_serve_stopping import KILL_TIMEOUT, _postgres_on

pytestmark = pytest.mark.slow
STARTUP = "Waiting for application startup."  # uvicorn, just before the app's lifespan


def _stop(proc: subprocess.Popen[bytes], log: Path) -> float:
    """SIGTERM; the seconds until the process exited (cleanly, and before the deadline)."""
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=KILL_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"no exit {KILL_TIMEOUT} s after SIGTERM:\n{log.read_text()[-4000:]}")
    took = time.monotonic() - started
    assert code == 0, log.read_text()[-4000:]
    assert took < SHUTDOWN_DEADLINE, f"{took:.1f} s: the hard exit, not a clean stop"
    return took


def _alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    alive = []
    for proc in processes:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(proc)
        except psutil.Error:
            continue
    return alive


def _command(proc: psutil.Process) -> str:
    try:
        return " ".join(proc.cmdline())
    except psutil.Error:
        return ""


def test_sigterm_while_the_pool_opens_stops_in_time(tmp_path: Path, database: str) -> None:
    log = tmp_path / "serve.log"
    with stalling_proxy(database) as (through, proxy):
        env = persais_env(tmp_path / "home", through, PERSAIS_LOG_LEVEL="INFO")
        args = ["serve", "--port", str(free_port())]
        with persais(args, env, tmp_path, log) as serve:
            # The checks and migrations get through; what connects once uvicorn starts the
            # app (the pool) is held. Held connections are read before the log: any of them
            # seen before the line is written came before the app started.
            deadline = time.monotonic() + 60
            while True:
                held = proxy.held()
                if STARTUP in log.read_text(errors="replace"):
                    break
                assert serve.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "the app never started"
                proxy.let_through(held)
                time.sleep(0.02)
            wait_for(proxy.held, 10, "the pool's connections held")
            time.sleep(0.5)
            took = _stop(serve, log)
    print(f"stopped {took:.1f} s after SIGTERM while the pool opened")


def test_sigterm_during_a_mechanic_job_stops_in_time_and_the_job_runs_again_once(
    tmp_path: Path,
) -> None:
    with stack(tmp_path, [], on_fly=False) as s:
        llm = s.llm
        llm.next_reply = lambda: routed_reply(llm.requests[-1])  # type: ignore[method-assign]
        llm.holds[1] = 600  # the Mechanic's plan is request 0; Aider's first question waits
        s.tell(text_update(ADA, f"/mechanic {REQUEST}"))
        server = s.server.proc
        assert server is not None

        def aider() -> list[psutil.Process]:
            children = _alive(psutil.Process(server.pid).children(recursive=True))
            return [c for c in children if "aider" in _command(c)]

        wait_for(aider, 120, "Aider running")
        wait_for(lambda: len(llm.requests) >= 2, 60, "Aider asking the model")
        children = [c for c in _alive(psutil.Process(server.pid).children(recursive=True))
                    if c.name() != "postgres"]  # fmt: skip
        took = _stop(server, s.server.log)
        print(f"stopped {took:.1f} s after SIGTERM with Aider waiting on the model")
        orphans = [_command(c) for c in children]
        wait_for(lambda: not _alive(children), 10, f"orphans left running: {orphans}")
        wait_for(lambda: not _postgres_on(s.home / "pgdata"), 15, "postgres stopped")

        s.server.start()
        s.server.wait_ready()
        s.wait_said("✅ Pull request #", 180)
        time.sleep(2)  # a second run of the job would show by now
        results = [t for t in s.said() if t.startswith("✅ Pull request #")]
        assert len(results) == 1, results
        assert any("resumed after an interruption" in t for t in s.said())
        pulls = [p for (full, _), p in s.github.pulls.items()
                 if full == HOME_REPO and p.head.startswith("mechanic/")]  # fmt: skip
        assert len(pulls) == 1
        assert s.sql("SELECT status FROM jobs") == [("opened",)]


def test_a_worker_takes_sigterm_during_its_start_and_lets_go_of_postgres(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    log = tmp_path / "worker.log"
    with persais(["worker"], persais_env(home), tmp_path, log) as worker:
        wait_for(lambda: (home / "pgdata" / "postmaster.pid").exists(), 60, "postgres starting")
        time.sleep(0.5)  # migrations, the runtime's start
        _stop(worker, log)
    wait_for(lambda: not _postgres_on(home / "pgdata"), 15, "postgres stopped")
