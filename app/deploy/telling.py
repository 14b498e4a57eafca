"""What deploys say: the messages of one request in its conversation (a progress line edited
in place, then the result), a release's one line, and `/releases`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC

from psycopg_pool import AsyncConnectionPool

from app import outbox
from app.agents import grants
from app.deploy import ledger
from app.deploy.here import ThisProcess
from app.deploy.ledger import Release


@dataclass
class Say:
    """What one deploy request says in its conversation: a progress line edited in place,
    then the result (keyed, so a retried run does not say it twice)."""

    pool: AsyncConnectionPool
    conversation: str
    rid: str
    handoffs: int = 0  # runs of this request queued by a process being replaced
    admin: bool = False  # asked by an admin: may deploy a release that widens a grant

    async def progress(self, text: str) -> None:
        async with self.pool.connection() as conn:
            await outbox.put(conn, self.conversation, text, key=f"deploy:{self.rid}")

    async def result(
        self,
        text: str,
        *,
        approval: str | None = None,
        links: list[tuple[str, str]] | None = None,
        keep: bool = False,  # True: a result already said for this request stays
    ) -> None:
        async with self.pool.connection() as conn:
            await outbox.put(conn, self.conversation, text, key=f"deploy:{self.rid}:result",
                             approval=approval, links=links, replace=not keep)  # fmt: skip


def line(release: Release) -> str:
    at = release.since.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    who = f" by {release.pressed_by}" if release.source == "merge" else ""
    why = f": {release.reason[:200]}" if release.status == "failed" and release.reason else ""
    return f"{release.label()} — {release.status} since {at}{who}{why}"


async def releases(pool: AsyncConnectionPool, here: ThisProcess, limit: int = 10) -> str:
    """`/releases`: the newest first, what each grants, and what this process runs."""
    async with pool.connection() as conn:
        history = await ledger.history(conn, limit)
    if not history:
        where = here.running.sha or "the image's own agents"
        return f"No releases yet: the agents come from {where[:12]}."
    lines = ["Releases (newest first):"]
    for release in history:
        mark = "▶" if release.status == "live" else " "
        lines.append(f"{mark} {line(release)}")
        held = grants.describe(release.granted)
        if held:
            lines.append("    grants: " + " · ".join(held))
    lines.append(here.where())
    return "\n".join(lines)
