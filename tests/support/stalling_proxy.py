"""A database that accepts connections and then says nothing, until the test lets them
through: a TCP front on loopback for a Postgres unix socket, holding each new connection
(accepted, never answered) until `let_through` forwards it to the real server."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from psycopg import conninfo as pg_conninfo


class StallingProxy:
    def __init__(self, loop: asyncio.AbstractEventLoop, backend: str) -> None:
        self.loop, self.backend = loop, backend
        self.port = 0
        self._held: list[asyncio.Event] = []  # one per connection not yet let through
        self.accepted = 0

    def held(self) -> list[asyncio.Event]:
        """The connections waiting now (read from any thread)."""
        return [gate for gate in list(self._held) if not gate.is_set()]

    def let_through(self, gates: list[asyncio.Event]) -> None:
        """Forward these held connections to the server."""
        for gate in gates:
            self.loop.call_soon_threadsafe(gate.set)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        gate = asyncio.Event()
        self._held.append(gate)
        try:
            await gate.wait()
            up_reader, up_writer = await asyncio.open_unix_connection(self.backend)
        except (OSError, asyncio.CancelledError):
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    with suppress(OSError, asyncio.CancelledError):
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    with suppress(OSError):
        sink.close()


@contextmanager
def stalling_proxy(conninfo: str) -> Iterator[tuple[str, StallingProxy]]:
    """Yields (the conninfo through the proxy, the proxy) for a database reached by `conninfo`
    on a unix socket."""
    params = pg_conninfo.conninfo_to_dict(conninfo)
    backend = f"{params['host']}/.s.PGSQL.{params.get('port', 5432)}"
    loop = asyncio.new_event_loop()
    proxy = StallingProxy(loop, backend)
    started = threading.Event()
    server: list[asyncio.AbstractServer] = []

    async def start() -> None:
        server.append(await asyncio.start_server(proxy._serve, "127.0.0.1", 0))
        proxy.port = server[0].sockets[0].getsockname()[1]
        started.set()

    thread = threading.Thread(target=loop.run_forever, name="stalling proxy", daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    params.update(host="127.0.0.1", port=str(proxy.port))
    try:
        yield pg_conninfo.make_conninfo(**params), proxy  # type: ignore[arg-type]
    finally:

        async def stop() -> None:
            server[0].close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
