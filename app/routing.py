"""Which handlers an event goes to, bedevere style: each handler module owns a `Router`
and the composition root merges them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from psycopg_pool import AsyncConnectionPool


@dataclass(frozen=True)
class Event:
    """One delivery as a handler sees it."""

    source: str  # "github" | "telegram"
    name: str  # X-GitHub-Event, or the Telegram update's kind ("message", ...)
    action: str | None
    delivery_id: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class Context:
    """What a handler may use. Grows as capabilities arrive (forge, bot, orchestrator)."""

    pool: AsyncConnectionPool
    worker: str


Handler = Callable[[Event, Context], Awaitable[None]]


class DropDelivery(Exception):
    """A handler cannot read this delivery and never will (a shape or kind it does not
    know): the worker closes it as ignored, counted by `reason`, and does not retry it."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class Router:
    def __init__(self, *others: Router) -> None:
        self._handlers: dict[tuple[str, str, str | None], list[Handler]] = {}
        for other in others:
            for key, handlers in other._handlers.items():
                self._handlers.setdefault(key, []).extend(handlers)

    def register(
        self, event: str, action: str | None = None, *, source: str = "github"
    ) -> Callable[[Handler], Handler]:
        """Register for an event ("*": every event of the source), or for one action of it
        (None: every action)."""

        def decorator(handler: Handler) -> Handler:
            self._handlers.setdefault((source, event, action), []).append(handler)
            return handler

        return decorator

    def handlers_for(self, event: Event) -> list[Handler]:
        found = list(self._handlers.get((event.source, "*", None), []))
        found += self._handlers.get((event.source, event.name, None), [])
        if event.action is not None:
            found += self._handlers.get((event.source, event.name, event.action), [])
        return found
