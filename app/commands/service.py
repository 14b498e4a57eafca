"""`serve`, `worker`, `migrate`, `doctor`: running and checking the service."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import faulthandler
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from app.commands.running import Exit, open_database
from app.db.migrate import Migration
from app.next_step import page_url, persais_command, serve_banner
from app.runtime import Runtime
from app.settings import Settings
from app.web.address import write_address

log = logging.getLogger(__name__)


def register(commands: Any) -> None:
    serve = commands.add_parser("serve", help="run the web server (and a worker, by default)")
    serve.add_argument(
        "--host", default="127.0.0.1", help="the address to listen on (default 127.0.0.1)"
    )
    serve.add_argument("--port", type=int, default=8000, help="the port (default 8000)")
    serve.add_argument("--no-worker", action="store_true", help="web only; run `persais worker`")
    serve.add_argument("--access-log", action="store_true", help="log every HTTP request")
    serve.set_defaults(func=cmd_serve)

    worker = commands.add_parser("worker", help="process deliveries (no web server)")
    worker.add_argument(
        "--ready-port", type=int, default=None,
        help="also answer /health and /ready on this port (the Fly deployer asks it)",
    )  # fmt: skip
    worker.set_defaults(func=cmd_worker)

    migrate = commands.add_parser("migrate", help="apply pending database migrations")
    migrate.set_defaults(func=cmd_migrate)

    doctor = commands.add_parser(
        "doctor", help="check what is configured and whether it works (asks each service)"
    )
    doctor.add_argument(
        "--offline", action="store_true",
        help="do not ask GitHub, Telegram, the model, embeddings or Fly; look at the settings",
    )  # fmt: skip
    doctor.add_argument(
        "--timeout", type=float, default=5.0, metavar="SECONDS",
        help="how long each service may take to answer (default 5)",
    )  # fmt: skip
    doctor.set_defaults(func=cmd_doctor, despite_bad_settings=cmd_doctor_despite)


# fly.toml's kill_timeout is 30 s: a stop that outlasts this is cut short before Fly's SIGKILL.
SHUTDOWN_DEADLINE = 25.0
READY_SERVER_STOP_SECONDS = 3.0


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from app.web.server import create_app

    stopping = Stopping()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, stopping)
    sock = listen(args.host, args.port)  # before anything slow: a busy port is one line
    write_address(settings.home, page_url(args.host, args.port).rstrip("/"))  # console-link
    try:
        db = open_database(settings)
        try:
            if stopping.requested:
                return 0
            runtime = Runtime(settings, db.conninfo)
            stopping.then = runtime.ask_to_stop  # a pool still opening gives up at once
            app = create_app(runtime, database_kind=db.kind, with_worker=not args.no_worker)
            config = uvicorn.Config(
                app,
                host=args.host,
                port=args.port,
                access_log=args.access_log,
                log_level=settings.log_level.lower(),
                timeout_graceful_shutdown=20,
            )
            server = _uvicorn_server(serve_banner(args.host, args.port, persais_command()))(config)
            stopping.server = server
            if not stopping.requested:
                server.run(sockets=[sock])
        finally:
            db.release()
    finally:
        sock.close()
    return 0


def listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise Exit(2, f"port {port} is in use; pass --port N") from None
        raise Exit(2, f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


class Stopping:
    """SIGTERM and SIGINT from the very start: noted while the database opens, handed to
    the web server once it runs, and ended by a hard exit if stopping outlasts
    SHUTDOWN_DEADLINE (a task that ignores cancellation must not keep the process alive)."""

    def __init__(self) -> None:
        self.requested = False
        self.server: Any = None
        self.then: Callable[[], object] | None = None  # `persais worker`: wake its loop

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if not self.requested:
            self.requested = True
            try:  # the handler runs on the main thread: the loop there, if one runs
                loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
            timer = threading.Timer(SHUTDOWN_DEADLINE, _give_up, (loop,))
            timer.daemon = True
            timer.start()
        if self.server is not None:
            self.server.handle_exit(signum, frame)
        if self.then is not None:
            self.then()


def _give_up(loop: asyncio.AbstractEventLoop | None) -> None:
    # The next start drops this process from the embedded server's holders.
    print(f"persais: stopping took over {SHUTDOWN_DEADLINE:.0f} s; exiting now", file=sys.stderr)
    _tell_what_held(loop)
    sys.stderr.flush()
    os._exit(1)


def _tell_what_held(loop: asyncio.AbstractEventLoop | None) -> None:
    """Where a stop that outlasted its deadline was held: every thread's stack and the
    loop's unfinished tasks (read from this timer thread: a best effort, the process is
    about to end anyway)."""
    print("persais: where it was held:", file=sys.stderr)
    faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
    if loop is None:
        return
    try:
        tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    except RuntimeError:  # the set changed while read
        return
    for task in tasks[:30]:
        print(f"task {task.get_name()}:", file=sys.stderr)
        with contextlib.suppress(Exception):
            task.print_stack(limit=8, file=sys.stderr)


def _uvicorn_server(banner: str | None = None) -> type:
    """`banner` is printed once the app has started (a newcomer's next step)."""
    import uvicorn

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            if banner is not None and self.started and not self.should_exit:
                print(banner, flush=True)

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            # `Stopping` already holds SIGTERM/SIGINT and hands them on; uvicorn's own
            # would re-raise them once it has shut down, ending the process before it
            # lets go of the embedded Postgres.
            yield

    return Server


def _ready_server(runtime: Runtime, port: int, database_kind: str) -> tuple[Any, socket.socket]:
    """/health and /ready beside a worker, on every address (Fly's private network is IPv6).
    The worker's own handlers take SIGTERM; this server is told to stop."""
    import uvicorn

    from app.web.server import readiness_app

    class Quiet(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    app = readiness_app(runtime, database_kind=database_kind)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    # One socket for IPv6 and IPv4 alike (asyncio would make an IPv6-only one).
    sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("::", port))
    return Quiet(config), sock


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    stopping = Stopping()  # as `serve`: held from the start, a hard exit past the deadline
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, stopping)
    db = open_database(settings)

    async def work() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        if stopping.requested:
            return
        runtime = Runtime(settings, db.conninfo)

        def stop_now() -> None:
            runtime.ask_to_stop()
            loop.call_soon_threadsafe(stop.set)

        stopping.then = stop_now
        await runtime.start(worker=True)  # a signal meanwhile sets `stop` all the same
        waiter = asyncio.create_task(runtime.wait_worker())
        ready = None
        if args.ready_port is not None:
            server, sock = _ready_server(runtime, args.ready_port, db.kind)
            ready = asyncio.create_task(server.serve(sockets=[sock]))
        await asyncio.wait(
            [waiter, asyncio.create_task(stop.wait())], return_when="FIRST_COMPLETED"
        )
        if ready is not None:
            server.should_exit = True
            try:  # a request still open must not hold the stop
                await asyncio.wait_for(asyncio.shield(ready), READY_SERVER_STOP_SECONDS)
            except TimeoutError:
                log.warning(
                    "the /ready server did not stop within %.0f s", READY_SERVER_STOP_SECONDS
                )
                server.force_exit = True
                await ready
        await runtime.stop()
        if waiter.done() and not waiter.cancelled() and waiter.exception():
            raise Exit(1, f"worker stopped: {waiter.exception()}")

    try:
        asyncio.run(work())
    finally:
        db.release()
    return 0


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    applied: list[Migration] = []
    open_database(settings, applied=applied).release()
    for migration in applied:
        print(f"applied {migration.name}")
    if not applied:
        print("the database is up to date")
    return 0


def cmd_doctor(settings: Settings, args: argparse.Namespace) -> int:
    from app import doctor

    return doctor.run(settings, offline=args.offline, timeout=args.timeout)


def cmd_doctor_despite(env_file: Path | None, args: argparse.Namespace) -> int:
    """The doctor on settings that do not load: every bad variable listed, the rest checked."""
    from app import doctor
    from app.settings import SettingsError
    from app.settings_problems import lenient_settings

    try:
        settings, problems = lenient_settings(env_file)
    except SettingsError as exc:
        print(f"persais: configuration error: {exc}", file=sys.stderr)
        return 2
    return doctor.run(
        settings, problems=tuple(problems), offline=args.offline, timeout=args.timeout
    )
