"""A stopwatch for benchmarks: how long a run spends inside named methods."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any


class Stopwatch:
    """Time spent inside some steps of a run, by wrapping the methods for the run
    (`restore` puts the originals back)."""

    def __init__(self) -> None:
        self.seconds: Counter[str] = Counter()
        self._undo: list[Callable[[], None]] = []

    def wrap(self, owner: Any, name: str, label: str) -> None:
        original = getattr(owner, name)

        async def timed(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return await original(*args, **kwargs)
            finally:
                self.seconds[label] += time.perf_counter() - t

        setattr(owner, name, timed)
        self._undo.append(lambda: setattr(owner, name, original))

    def wrap_sync(self, owner: Any, name: str, label: str) -> None:
        original = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[label] += time.perf_counter() - t

        setattr(owner, name, timed)
        self._undo.append(lambda: setattr(owner, name, original))

    def restore(self) -> None:
        while self._undo:
            self._undo.pop()()
