"""githubkit's token cache, with one fetch of an installation token at a time.

githubkit's auth flow reads the cache, and on a miss trades the App's JWT for an
installation token and stores it. Two requests that start together (a reaction and a
permission check on the same delivery) both miss and both fetch: two tokens where one does.
Here a miss on an installation key that another task is already fetching waits for that
fetch and reads its token. If that fetch fails (it never stores a token), the waiters take
over after `fetch_wait`, as long as a fetch may take, and one of them fetches.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

from githubkit.cache import MemCacheStrategy
from githubkit.cache.mem_cache import MemCache

FETCH_WAIT = 30.0  # seconds: githubkit's request timeout for the token request
INSTALLATION_KEYS = ":installation:"  # githubkit's INSTALLATION_CACHE_KEY names this part


class OneFetchCache(MemCache):
    def __init__(self, fetch_wait: float = FETCH_WAIT) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.fetch_wait = fetch_wait
        self._fetching: dict[str, tuple[float, asyncio.Event]] = {}

    async def aget(self, key: str) -> str | None:
        while True:
            value = self.get(key)
            if value is not None or INSTALLATION_KEYS not in key:
                return value
            fetch = self._fetching.get(key)
            if fetch is None or time.monotonic() - fetch[0] > self.fetch_wait:
                # None here means "fetch it": this caller does, the others wait for it.
                self._fetching[key] = (time.monotonic(), asyncio.Event())
                return None
            began, stored = fetch
            try:
                await asyncio.wait_for(stored.wait(), self.fetch_wait - (time.monotonic() - began))
            except TimeoutError:
                continue  # the fetch failed or hangs: take it over

    async def aset(self, key: str, value: str, ex: timedelta) -> None:
        self.set(key, value, ex)
        fetch = self._fetching.pop(key, None)
        if fetch is not None:
            fetch[1].set()


class OneFetchStrategy(MemCacheStrategy):
    """githubkit's memory cache strategy, with `OneFetchCache` as its store."""

    def get_cache_storage(self) -> MemCache:
        if self._cache is None:
            self._cache = OneFetchCache()
        return self._cache
