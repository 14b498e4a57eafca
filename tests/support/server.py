"""The real Persais web app under uvicorn on a loopback port, in a background thread."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import uvicorn

from app.routing import Router
from app.runtime import Runtime
from app.settings import Settings
from app.web.server import create_app


@contextmanager
def running_server(
    settings: Settings, conninfo: str, *, worker: bool = True, router: Router | None = None
) -> Iterator[tuple[str, Runtime]]:
    runtime = Runtime(settings, conninfo, router=router)
    app = create_app(runtime, database_kind="external", with_worker=worker)
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets that name it, and
    # without it every answer waits out the 40 ms delayed-ACK timer.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    )
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            asyncio.run(server.serve(sockets=[sock]))
        except BaseException as exc:  # surfaced in the test thread below
            errors.append(exc)

    thread = threading.Thread(target=serve, name="persais-test-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if errors or not thread.is_alive():
            raise RuntimeError(f"the test server did not start: {errors}")
        if time.monotonic() > deadline:
            raise TimeoutError("the test server did not start in 20 s")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}", runtime
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
        if errors:
            raise errors[0]


@contextmanager
def client_for(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=10) as client:
        yield client
