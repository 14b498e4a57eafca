"""Below GitHub's secondary limit on content: fewer than 80 content-creating requests a
minute per installation (comments, reviews, check runs, reactions, merges).

A githubkit throttler on each installation's client: a request that creates or changes
something waits until the last `window` seconds hold fewer than `limit` such requests.
Reads pass straight through. The window is per process: several workers on one installation
each keep their own (say so in the limit you give them).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncGenerator, Generator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import httpx
from githubkit.throttling import BaseThrottler

WRITES = frozenset({"POST", "PATCH", "PUT", "DELETE"})
LIMIT = 75  # a margin under 80


class ContentThrottler(BaseThrottler):
    def __init__(self, limit: int = LIMIT, window: float = 60.0) -> None:
        self.limit = limit
        self.window = window
        self._sent: deque[float] = deque()
        self._lock: asyncio.Lock | None = None
        self.waited = 0.0  # seconds spent waiting, all told (for tests and benchmarks)

    @staticmethod
    def creates_content(request: httpx.Request) -> bool:
        return request.method in WRITES and not request.url.path.endswith("/access_tokens")

    @contextmanager
    def acquire(self, request: httpx.Request) -> Generator[None, Any, Any]:
        yield  # Persais talks to GitHub asynchronously only

    @asynccontextmanager
    async def async_acquire(self, request: httpx.Request) -> AsyncGenerator[None, Any]:
        if self.creates_content(request):
            if self._lock is None:
                self._lock = asyncio.Lock()
            async with self._lock:  # one at a time through the window, in order
                while len(self._sent) >= self.limit:
                    pause = self._sent[0] + self.window - time.monotonic()
                    if pause > 0:
                        self.waited += pause
                        await asyncio.sleep(pause)
                    self._sent.popleft()
                self._sent.append(time.monotonic())
        yield
