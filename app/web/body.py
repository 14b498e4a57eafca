"""Reading a webhook body without letting strangers hold the memory.

A body is read before its signature can be checked, so until then it is anyone's. Each
route caps its own size (a declared Content-Length over the cap is refused before a byte is
read), and a `BodyBudget` caps the bytes held by all bodies not yet verified, across every
connection: past it, a request is told to come back later (503 with Retry-After).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from starlette.requests import ClientDisconnect, Request

from app.web.refusal import Refusal

RETRY_AFTER_SECONDS = 5


class BodyBudget:
    """Bytes that unverified bodies may hold, shared by all connections of one process
    (one event loop: no lock needed)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.held = 0

    @contextmanager
    def hold(self) -> Iterator[Held]:
        """The bytes taken inside the block are given back when it ends."""
        held = Held(self)
        try:
            yield held
        finally:
            self.held -= held.size


class Held:
    def __init__(self, budget: BodyBudget) -> None:
        self.budget = budget
        self.size = 0

    def take(self, size: int) -> None:
        if self.budget.held + size > self.budget.capacity:
            raise Refusal(
                503, "busy", "too many unverified bodies in flight; try again shortly",
                retry_after=RETRY_AFTER_SECONDS,
            )  # fmt: skip
        self.budget.held += size
        self.size += size


async def read_body(request: Request, limit: int, held: Held | None = None) -> list[bytes]:
    """The body's chunks as they came, at most `limit` bytes in all (kept apart: a growing
    buffer would copy, and its freed copies stay in the heap). With `held`, the bytes count
    against the budget: all of a declared length at once before reading, else chunk by chunk."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit():
        if int(declared) > limit:
            raise Refusal(413, "too_large", f"the body is over {limit} bytes")
        if held is not None:
            held.take(int(declared))
            held = None  # h11 holds the body to its declared length
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise Refusal(413, "too_large", f"the body is over {limit} bytes")
            if held is not None:
                held.take(len(chunk))
            chunks.append(chunk)
    except ClientDisconnect:
        raise Refusal(400, "disconnect", "the client went away mid-body") from None
    return chunks
