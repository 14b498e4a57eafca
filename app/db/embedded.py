"""The embedded Postgres: pgserver's bundled PostgreSQL (with pgvector) in PERSAIS_HOME.

pgserver keeps one server per data directory and a list of the processes holding it; the
last one to exit stops it. Two Persais processes on one PERSAIS_HOME (say `serve` and
`chat`) therefore share one server. A process killed with SIGKILL never removes itself
from that list, so before joining we drop the pids that are no longer alive; otherwise a
crashed process would keep the server running forever.

A postmaster killed with SIGKILL leaves its postmaster.pid behind, and its pid stays a
zombie until it is reaped; pgserver (and Postgres itself) would take that pid for a live
server. So a postmaster.pid whose pid is gone, a zombie, or not a postgres of this data
folder is stale: once no process of the old server is left, it is removed and the server
starts anew.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import psycopg
from psycopg import sql

DATABASE_NAME = "persais"

logging.getLogger("pgserver").setLevel(logging.WARNING)


class EmbeddedDatabaseError(RuntimeError):
    pass


@dataclass
class EmbeddedPostgres:
    """A handle on the shared embedded server; `conninfo` points at the Persais database."""

    pgdata: Path
    conninfo: str
    _server: Any

    def stop(self) -> None:
        """Let go of the server; pgserver stops it when no other process holds it."""
        self._server.cleanup()


def start_embedded(home: Path) -> EmbeddedPostgres:
    home.mkdir(parents=True, exist_ok=True)
    pgdata = home / "pgdata"
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI) and falls back
        # to /tmp/runtime-<uid>, which is where pgserver keeps its lock: fine for us.
        warnings.simplefilter("ignore")
        from pgserver.postgres_server import PostgresServer, get_server

    with PostgresServer._lock:
        _prune_dead_handles(pgdata / ".handle_pids.json")
        _clear_stale_postmaster(pgdata)
    try:
        server = get_server(pgdata, cleanup_mode="stop")
    except Exception as exc:
        log = pgdata / "log"
        tail = log.read_text(errors="replace")[-600:] if log.exists() else ""
        raise EmbeddedDatabaseError(
            f"the embedded Postgres in {pgdata} did not start: {exc}\n{tail}"
        ) from exc
    admin_uri: str = server.get_uri()
    _ensure_database(admin_uri, DATABASE_NAME)
    return EmbeddedPostgres(pgdata=pgdata, conninfo=server.get_uri(DATABASE_NAME), _server=server)


def _prune_dead_handles(handles: Path) -> None:
    if not handles.exists():
        return
    try:
        pids = json.loads(handles.read_text())
    except ValueError:
        pids = []
    alive = [pid for pid in pids if isinstance(pid, int) and psutil.pid_exists(pid)]
    if alive != pids:
        handles.write_text(json.dumps(alive))


def _clear_stale_postmaster(pgdata: Path, *, wait: float = 15.0) -> None:
    pidfile = pgdata / "postmaster.pid"
    try:
        lines = pidfile.read_text().splitlines()
        pid = int(lines[0])
    except (OSError, ValueError, IndexError):
        return  # none, or one being written: Postgres decides
    if _is_postgres_of(pgdata, pid, if_unknown=True):  # in doubt, not stale
        return
    # The old server's backends outlive their postmaster for a moment and may still hold
    # its shared memory; a new server must not start beside them.
    deadline = time.monotonic() + wait
    while leftovers := _processes_of(pgdata):
        if time.monotonic() > deadline:
            raise EmbeddedDatabaseError(
                f"the embedded Postgres in {pgdata} died, but its processes {leftovers} remain"
            )
        time.sleep(0.1)
    # The socket's lock file names the dead pid too (postmaster.pid: line 4 the port, 5 the
    # socket folder).
    if len(lines) > 4 and lines[3].strip().isdigit() and lines[4].strip():
        socket_lock = Path(lines[4].strip()) / f".s.PGSQL.{lines[3].strip()}.lock"
        with contextlib.suppress(OSError, ValueError, IndexError):
            if int(socket_lock.read_text().splitlines()[0]) == pid:
                socket_lock.unlink()
    pidfile.unlink(missing_ok=True)


def _processes_of(pgdata: Path) -> list[int]:
    # Ours run as our user, so a process we may not look at is someone else's.
    return [
        p.pid for p in psutil.process_iter() if _is_postgres_of(pgdata, p.pid, if_unknown=False)
    ]


def _is_postgres_of(pgdata: Path, pid: int, *, if_unknown: bool) -> bool:
    """Whether `pid` is a live (not zombie) postgres process working in `pgdata` (a
    postmaster and its backends all work there); `if_unknown` when we may not look."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE or proc.name() != "postgres":
            return False
        return Path(proc.cwd()).resolve() == pgdata.resolve()
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
    except psutil.AccessDenied:
        return if_unknown


def _ensure_database(admin_uri: str, name: str) -> None:
    with psycopg.connect(admin_uri, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists is None:
            # Another process on the same PERSAIS_HOME may win the race; that is fine.
            with contextlib.suppress(psycopg.errors.DuplicateDatabase):
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
