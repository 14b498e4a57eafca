"""The whole of Persais as a person meets it, for the end-to-end tests: `persais serve` as a
real process configured only through its environment (embedded Postgres in its home), with
the fake GitHub (real bare repositories, delivering the App's webhooks), the fake Telegram,
the fake Fly (the serve process is one of the app's machines: an update stops it and starts
it again on the release) and the scripted model, all on loopback.

Everything the tests do to Persais goes through `/webhooks/telegram` and `/webhooks/github`.
"""

from __future__ import annotations

import json
import secrets
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg

from app.settings import CHECKOUT_ROOT
from tests.support.deploys import machine_boot
from tests.support.fake_fly import FLY_TOKEN, AppProcess, FakeFly, fake_fly
from tests.support.fake_github import APP_ID, FakeGitHub, app_key_pair, fake_github
from tests.support.fake_telegram import ADA, BOT_ID, FakeTelegram, fake_telegram, send
from tests.support.processes import free_port, persais_env, wait_ready
from tests.support.scripted_llm import ScriptedLLM, scripted_llm
from tests.support.waiting import wait_for

HOME_REPO = "octo/persais"
ADA_LOGIN = "ada"  # Ada on GitHub: an admin of the home repository
APP_HOST = "127.0.0.9"  # the serve process's machine (the fake's own machines: 127.0.0.2…)
LLM_KEY = "sk-e2e-secret-key"
PRIVATE, PUBLIC = app_key_pair()


class PersaisProcess:
    """`persais serve` as Fly (or a person) runs it: started with an environment, stopped
    with SIGTERM and SIGKILL after a timeout, or killed outright."""

    def __init__(self, env: dict[str, str], host: str, port: int, cwd: Path, log: Path) -> None:
        self.env, self.host, self.port, self.cwd, self.log = env, host, port, cwd, log
        self.url = f"http://{host}:{port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts: list[dict[str, str]] = []  # the extra env of each start
        self._lock = threading.Lock()

    def start(self, extra: dict[str, str] | None = None) -> None:
        with self._lock:
            assert self.proc is None or self.proc.poll() is not None, "already running"
            env = {**self.env, **(extra or {})}
            self.starts.append(dict(extra or {}))
            with self.log.open("ab") as out:
                out.write(f"\n=== start {len(self.starts)}: {sorted(extra or {})}\n".encode())
                out.flush()
                args = ["serve", "--host", self.host, "--port", str(self.port)]
                self.proc = subprocess.Popen(
                    [sys.executable, "-m", "app", *args],
                    env=env, cwd=self.cwd, stdout=out, stderr=out,
                )  # fmt: skip

    def wait_ready(self, timeout: float = 120) -> dict[str, Any]:
        assert self.proc is not None, "not started"
        try:
            return wait_ready(self.url, self.proc, timeout)
        except (RuntimeError, TimeoutError) as exc:
            raise RuntimeError(f"{exc}:\n{self.tail()}") from exc

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM, then SIGKILL after `timeout` (Fly's kill_signal and kill_timeout)."""
        with self._lock:
            proc = self.proc
            if proc is None or proc.poll() is not None:
                return
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def kill(self) -> None:
        with self._lock:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.send_signal(signal.SIGKILL)
                self.proc.wait()

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


@dataclass
class Stack:
    home: Path
    github: FakeGitHub
    telegram: FakeTelegram
    llm: ScriptedLLM
    server: PersaisProcess
    fly: FakeFly | None = None
    machine: str | None = None  # the serve process's Fly machine
    secrets_used: list[str] = field(default_factory=list)

    # -- talking to Persais, only through its webhooks ---------------------------------------

    def tell(self, update: dict[str, Any]) -> None:
        """Post a Telegram update to /webhooks/telegram (a new connection each time: the
        server may have been restarted since)."""
        with httpx.Client(base_url=self.server.url, timeout=10) as client:
            send(client, update)

    # -- what Persais said ----------------------------------------------------------------------

    def said(self, chat: int = ADA) -> list[str]:
        """Every text sent to or edited in `chat`, in order."""
        return [
            str(c.params.get("text", ""))
            for c in self.telegram.calls
            if c.method in ("sendMessage", "editMessageText")
            and int(c.params.get("chat_id", 0)) == chat
        ]

    def wait_said(self, fragment: str, timeout: float = 60, chat: int = ADA) -> str:
        def found() -> str | None:
            return next((t for t in self.said(chat) if fragment in t), None)

        text: str = wait_for(found, timeout, f"{fragment!r} in the chat; said:\n" + "\n".join(
            self.said(chat)[-8:]) + "\n" + self.server.tail(3000))  # fmt: skip
        return text

    def with_buttons(self, labels: list[str]) -> list[dict[str, Any]]:
        return [p for p in self.telegram.sent() if [b["text"] for b in buttons(p)] == labels]

    # -- the database, for assertions -----------------------------------------------------------

    def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        # postmaster.pid: pid, data directory, start time, port, socket directory, ...
        pid = (self.home / "pgdata" / "postmaster.pid").read_text().splitlines()
        conninfo = f"host={pid[4]} port={pid[3]} user=postgres dbname=persais"
        with psycopg.connect(conninfo, autocommit=True) as conn:
            cur = conn.execute(query.encode(), params or None)
            return cur.fetchall() if cur.description else []


def buttons(params: dict[str, Any]) -> list[dict[str, Any]]:
    markup = params.get("reply_markup") or {}
    if isinstance(markup, str):
        markup = json.loads(markup)
    return [b for row in markup.get("inline_keyboard", []) for b in row]


def pick(params: dict[str, Any], label: str) -> str:
    """The callback data of the button labelled `label`."""
    return str(next(b["callback_data"] for b in buttons(params) if b["text"] == label))


@contextmanager
def stack(tmp_path: Path, replies: list[str], *, on_fly: bool = True) -> Iterator[Stack]:
    """Persais serving with every outside party faked on loopback; yields once it is ready.
    With `on_fly`, the serve process is machine `persais-app-1` of a Fly app whose other
    machine (`persais-worker-1`) is the fake's own, booting releases with our sync."""
    home = tmp_path / "home"
    with ExitStack() as outside:
        gh_url, github = outside.enter_context(fake_github(PUBLIC))
        bare = github.add_repo(HOME_REPO, 77, source=CHECKOUT_ROOT)
        github.permissions[(HOME_REPO, ADA_LOGIN)] = "admin"
        tg_url, telegram = outside.enter_context(fake_telegram(BOT_ID))
        llm_url, llm = outside.enter_context(scripted_llm(replies))
        env = persais_env(
            home, None, PERSAIS_LOG_LEVEL="INFO",
            GITHUB_APP_ID=str(APP_ID), GITHUB_PRIVATE_KEY=PRIVATE, GITHUB_API_URL=gh_url,
            PERSAIS_HOME_REPO=HOME_REPO,
            TELEGRAM_API_URL=tg_url, PERSAIS_TELEGRAM_ALLOWED_USERS=str(ADA),
            PERSAIS_TELEGRAM_ADMINS=str(ADA),
            LLM_API_BASE=llm_url, LLM_API_KEY=LLM_KEY, LLM_MODEL="scripted",
        )  # fmt: skip
        fly: FakeFly | None = None
        machine: str | None = None
        port = free_port(APP_HOST)
        if on_fly:
            boot = machine_boot(bare, tmp_path / "machines", CHECKOUT_ROOT / "dynamic" / "agents")
            fly_url, fly = outside.enter_context(fake_fly(machines=1, boot=boot))
            machine, port = secrets.token_hex(7), fly.ready_port
            env.update(
                FLY_API_TOKEN=FLY_TOKEN, FLY_APP_NAME=fly.app, FLY_API_URL=fly_url,
                FLY_MACHINE_ID=machine, PERSAIS_FLY_READY_PORT=str(port),
                PERSAIS_DEPLOY_TIMEOUT_SECONDS="60",
            )  # fmt: skip
        server = PersaisProcess(env, APP_HOST, port, CHECKOUT_ROOT, tmp_path / "serve.log")
        github.hook_url = f"{server.url}/webhooks/github"
        if fly is not None and machine is not None:
            process = AppProcess(start=lambda e: server.start(_release_env(e)), stop=server.stop)
            fly.attach(machine, "persais-app-1", APP_HOST, process, {"PERSAIS_HOME": str(home)})
        server.start()
        outside.callback(server.stop)
        server.wait_ready()
        yield Stack(home, github, telegram, llm, server, fly, machine, [LLM_KEY, PRIVATE])


def _release_env(machine_env: dict[str, str]) -> dict[str, str]:
    """What of a Fly machine's env the process takes: the release to run."""
    return {k: v for k, v in machine_env.items() if k == "PERSAIS_RELEASE"}
