"""Real `persais` processes, started as a user would start them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.support.webhooks import GITHUB_SECRET, TELEGRAM_SECRET, TELEGRAM_TOKEN

_KEEP = {"PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "XDG_RUNTIME_DIR"}


def persais_env(home: Path, database: str | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in _KEEP}
    env.update(
        PERSAIS_HOME=str(home),
        GITHUB_WEBHOOK_SECRET=GITHUB_SECRET,
        TELEGRAM_BOT_TOKEN=TELEGRAM_TOKEN,
        TELEGRAM_WEBHOOK_SECRET=TELEGRAM_SECRET,
        PERSAIS_TELEGRAM_MODE="webhook",  # tests post updates; polling has its own
        PERSAIS_LOG_LEVEL="WARNING",
    )
    if database is not None:
        env["DATABASE_URL"] = database
    env.update(extra)
    return env


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def persais(
    args: list[str], env: dict[str, str], cwd: Path, log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """Run `persais ARGS`; on exit, SIGTERM it (if still alive) and wait."""
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app", *args], env=env, cwd=cwd, stdout=out, stderr=out
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_ready(base_url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> dict:  # type: ignore[type-arg]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"persais exited with {proc.returncode} before it was ready")
        try:
            response = httpx.get(f"{base_url}/ready", timeout=2)
            if response.status_code == 200:
                return response.json()  # type: ignore[no-any-return]
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{base_url} was not ready within {timeout} s")
