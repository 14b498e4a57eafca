"""`persais serve` as a real process: a busy port, SIGTERM at any time, and restarts after
the server and its embedded Postgres were both SIGKILLed."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import psutil
import pytest

from app.commands.service import SHUTDOWN_DEADLINE
from app.db.embedded import _clear_stale_postmaster
from tests.support.processes import free_port, persais, persais_env, wait_ready
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parent.parent
KILL_TIMEOUT = float(tomllib.loads((ROOT / "fly.toml").read_text()).get("kill_timeout", 5))


def test_the_shutdown_deadline_comes_before_flys_kill() -> None:
    assert SHUTDOWN_DEADLINE < KILL_TIMEOUT


@pytest.mark.slow
def test_a_busy_port_is_one_line_and_exit_2_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        out = subprocess.run(
            [sys.executable, "-m", "app", "serve", "--port", str(port)],
            env=persais_env(tmp_path / "home"), cwd=tmp_path,
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip().splitlines() == [f"persais: port {port} is in use; pass --port N"], (
        out.stderr
    )
    assert time.monotonic() - started < 10
    assert not (tmp_path / "home" / "pgdata").exists()  # nothing slow was started


def _postgres_on(pgdata: Path) -> bool:
    for proc in psutil.process_iter(["name", "cmdline"]):
        if proc.info["name"] == "postgres" and str(pgdata) in (proc.info["cmdline"] or []):
            return True
    return False


def _bound(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
        return False


def _stops_in_time(proc: subprocess.Popen[bytes], log: Path) -> None:
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=KILL_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"no exit {KILL_TIMEOUT} s after SIGTERM:\n{log.read_text()}")
    assert code == 0, log.read_text()
    assert time.monotonic() - started < SHUTDOWN_DEADLINE  # a clean stop, not the hard exit


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.0, 1.0, 2.5, "postgres-up"])
def test_sigterm_during_start_stops_in_time_and_lets_go_of_postgres(
    tmp_path: Path, delay: float | str
) -> None:
    home = tmp_path / "home"
    port = free_port()
    log = tmp_path / "serve.log"
    with persais(["serve", "--port", str(port)], persais_env(home), tmp_path, log) as serve:
        # From the moment the port is taken, `persais serve` holds SIGTERM.
        wait_for(lambda: _bound(port), 60, "the port bound")
        if delay == "postgres-up":  # then migrations, the runtime's start, the warm-up
            wait_for(lambda: (home / "pgdata" / "postmaster.pid").exists(), 60)
            time.sleep(0.5)
        else:
            assert isinstance(delay, float)
            time.sleep(delay)
        _stops_in_time(serve, log)
    wait_for(lambda: not _postgres_on(home / "pgdata"), 15, "postgres stopped")


@pytest.mark.slow
def test_sigterm_once_ready_stops_in_time(tmp_path: Path) -> None:
    home = tmp_path / "home"
    port = free_port()
    log = tmp_path / "serve.log"
    with persais(["serve", "--port", str(port)], persais_env(home), tmp_path, log) as serve:
        wait_ready(f"http://127.0.0.1:{port}", serve)
        _stops_in_time(serve, log)
    wait_for(lambda: not _postgres_on(home / "pgdata"), 15, "postgres stopped")


@pytest.mark.slow
def test_a_restart_after_sigkilling_server_and_postgres_comes_up(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = persais_env(home)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    for _ in range(3):
        with persais(["serve", "--port", str(port)], env, tmp_path, log) as serve:
            wait_ready(url, serve)
            postmaster = int((home / "pgdata" / "postmaster.pid").read_text().split()[0])
            serve.send_signal(signal.SIGKILL)
            os.kill(postmaster, signal.SIGKILL)
            serve.wait()
    with persais(["serve", "--port", str(port)], env, tmp_path, log) as serve:
        assert wait_ready(url, serve)["database"] == {"kind": "embedded", "ok": True}


def _pidfile(pgdata: Path, pid: int) -> Path:
    pgdata.mkdir(parents=True, exist_ok=True)
    pidfile = pgdata / "postmaster.pid"
    pidfile.write_text(f"{pid}\n{pgdata}\n1700000000\n5432\n{pgdata}\n\n  1 2\nready\n")
    (pgdata / ".s.PGSQL.5432.lock").write_text(f"{pid}\n")
    return pidfile


def test_a_postmaster_pid_that_is_gone_or_not_postgres_is_stale(tmp_path: Path) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    for pid in (gone.pid, os.getpid()):  # gone; alive, but not a postgres of this folder
        pidfile = _pidfile(tmp_path / "pgdata", pid)
        _clear_stale_postmaster(tmp_path / "pgdata")
        assert not pidfile.exists()
        assert not (tmp_path / "pgdata" / ".s.PGSQL.5432.lock").exists()


def test_a_zombie_postmaster_pid_is_stale(tmp_path: Path) -> None:
    zombie = subprocess.Popen(["true"])
    wait_for(lambda: psutil.Process(zombie.pid).status() == psutil.STATUS_ZOMBIE, 10)
    try:
        pidfile = _pidfile(tmp_path / "pgdata", zombie.pid)
        _clear_stale_postmaster(tmp_path / "pgdata")
        assert not pidfile.exists()
    finally:
        zombie.wait()


def test_a_stop_that_hangs_is_cut_short_at_the_deadline() -> None:
    # A process that takes SIGTERM with `Stopping` and then never finishes (as when a task
    # ignores cancellation) exits at SHUTDOWN_DEADLINE all the same.
    script = (
        "import os, signal, time\n"
        "from app.commands import service\n"
        "service.SHUTDOWN_DEADLINE = 0.5\n"
        "signal.signal(signal.SIGTERM, service.Stopping())\n"
        "os.kill(os.getpid(), signal.SIGTERM)\n"
        "time.sleep(30)\n"
    )
    started = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 1
    assert "stopping took over" in out.stderr
    assert time.monotonic() - started < 10
