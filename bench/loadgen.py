"""A small HTTP/1.1 load generator over keep-alive connections, cheap enough per request
that on a 2-core machine it measures the server rather than itself.

Requests are pre-encoded bytes; only the delivery id header changes between them (GitHub
signs the body, not the headers, so one signature serves every request).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Results:
    latencies: list[float] = field(default_factory=list)  # seconds, per answered request
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0
    elapsed: float = 0.0

    @property
    def answered(self) -> int:
        return len(self.latencies)

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]

    def rate(self) -> float:
        return self.answered / self.elapsed if self.elapsed else 0.0


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def request(self, raw: bytes) -> int:
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length:
            await self.reader.readexactly(length)
        return status

    def close(self) -> None:
        self.writer.close()


def request_bytes(path: str, headers: dict[str, str], body: bytes, host: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def closed_loop(
    host: str, port: int, make: Callable[[int], bytes], *, connections: int, seconds: float
) -> Results:
    """As fast as the server answers: `connections` clients, each one request at a time."""
    results = Results()
    counter = iter(range(10**9))
    deadline = time.perf_counter() + seconds

    async def client() -> None:
        conn = await Connection.open(host, port)
        try:
            while time.perf_counter() < deadline:
                raw = make(next(counter))
                start = time.perf_counter()
                try:
                    status = await conn.request(raw)
                except (OSError, asyncio.IncompleteReadError):
                    results.errors += 1
                    conn.close()
                    conn = await Connection.open(host, port)
                    continue
                results.latencies.append(time.perf_counter() - start)
                results.statuses[status] = results.statuses.get(status, 0) + 1
        finally:
            conn.close()

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(connections)))
    results.elapsed = time.perf_counter() - start
    return results


async def open_loop(
    host: str, port: int, make: Callable[[int], bytes], *, rate: float, seconds: float
) -> Results:
    """A fixed arrival rate, whatever the server does. Latency counts from the moment a
    request was due, so a server that falls behind is charged for the wait."""
    results = Results()
    idle: list[Connection] = []
    total = int(rate * seconds)
    start = time.perf_counter()

    async def one(n: int, due: float) -> None:
        reused = bool(idle)
        conn = idle.pop() if idle else await Connection.open(host, port)
        try:
            status = await conn.request(make(n))
        except (OSError, asyncio.IncompleteReadError):
            conn.close()
            if not reused:
                results.errors += 1
                return
            # A keep-alive connection the server closed while it sat idle (uvicorn's 5 s
            # timeout): send again on a fresh one, as HTTP clients do.
            conn = await Connection.open(host, port)
            try:
                status = await conn.request(make(n))
            except (OSError, asyncio.IncompleteReadError):
                results.errors += 1
                conn.close()
                return
        results.latencies.append(time.perf_counter() - due)
        results.statuses[status] = results.statuses.get(status, 0) + 1
        idle.append(conn)

    tasks = []
    for n in range(total):
        due = start + n / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(n, due)))
    await asyncio.gather(*tasks)
    results.elapsed = time.perf_counter() - start
    for conn in idle:
        conn.close()
    return results
