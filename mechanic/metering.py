"""What each model call used, told to whoever keeps the books, and a way for them to say no.

The Mechanic makes model calls (its planner through `ChatModel`, Aider as a subprocess) but
keeps no books: the app does (`app/costs`). So the library declares the `Meter` it reports
to, and the app sets one around a piece of work with `metered`. A context variable carries
it, so every call made inside that work (in its own tasks too: a task copies the context it
was created in) reaches the same meter, and a call made outside any work is simply not
counted. `before` runs ahead of each call (a `ChatModel` request, an Aider round) and may
refuse it with `BudgetReached`; `after` hears what the call used.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Usage:
    """One model call as its answer reported it."""

    model: str
    prompt_tokens: int | None  # None: the answer did not say
    completion_tokens: int | None
    cost_usd: float | None = None  # what the provider (or Aider) said it cost; None: not said
    source: str = "api"  # "api": a chat completion; "aider": a line of Aider's output


class BudgetReached(RuntimeError):
    """No more model calls for this work: its message says which budget, for the person."""


class Meter(Protocol):
    async def before(self, prompt_chars: int = 0) -> None:
        """Raise BudgetReached to refuse the next call (`prompt_chars`: its prompt, if known)."""

    async def after(self, usage: Usage) -> None: ...

    def describe(self) -> str:
        """What the work spent so far, in one line for people."""


_meter: ContextVar[Meter | None] = ContextVar("mechanic_meter", default=None)


@contextmanager
def metered(meter: Meter) -> Iterator[None]:
    """Model calls made inside (and in tasks created inside) report to `meter`."""
    token = _meter.set(meter)
    try:
        yield
    finally:
        _meter.reset(token)


async def before(prompt_chars: int = 0) -> None:
    meter = _meter.get()
    if meter is not None:
        await meter.before(prompt_chars)


async def after(usage: Usage) -> None:
    meter = _meter.get()
    if meter is not None:
        await meter.after(usage)


def spent() -> str | None:
    """What the current work spent so far (None outside any metered work)."""
    meter = _meter.get()
    return None if meter is None else meter.describe()
