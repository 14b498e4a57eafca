"""`/pause` and `/resume` on one pull request: a paused pull request gets no automatic
review (opened, new pushes, ready for review), and `/review` still reviews it on request.
After `/resume`, the next push is reviewed from the head reviewed last, so what was pushed
while paused is covered then."""

from __future__ import annotations

from typing import Any

from githubkit import GitHub
from psycopg_pool import AsyncConnectionPool

from app import audit
from app.github.once import first_time

PAUSED = (
    "⏸️ Paused: Persais will not review new pushes to this pull request until someone who may "
    "write here says `/resume`. `/review` still reviews it on request."
)
RESUMED = "▶️ Resumed: new pushes to this pull request are reviewed again."
ALREADY_PAUSED = "This pull request is already paused (`/resume` to review new pushes again)."
NOT_PAUSED = "This pull request is not paused: new pushes are reviewed."
NOT_A_PULL = "`/pause` and `/resume` work on pull requests."


async def paused(pool: AsyncConnectionPool, repository: str, number: int) -> bool:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT 1 FROM review_pauses WHERE repository = %s AND pull_number = %s",
            (repository, number),
        )
        return await cur.fetchone() is not None


async def command(
    pool: AsyncConnectionPool,
    client: GitHub[Any],
    name: str,
    repository: str,
    number: int,
    *,
    login: str,
    comment_id: int,
    on_pull: bool,
) -> str:
    """Act on `/pause` or `/resume` (`name`) from `login`, who may write here, and say so in
    the conversation, once per comment (a retried delivery says nothing twice)."""
    owner, repo = repository.split("/", 1)
    if not on_pull:
        text, result = NOT_A_PULL, f"{name}: not a pull request"
    else:
        async with pool.connection() as conn, conn.transaction():
            if name == "pause":
                cur = await conn.execute(
                    "INSERT INTO review_pauses (repository, pull_number, paused_by)"
                    " VALUES (%s, %s, %s) ON CONFLICT DO NOTHING RETURNING 1",
                    (repository, number, f"github:{login}"),
                )
            else:
                cur = await conn.execute(
                    "DELETE FROM review_pauses WHERE repository = %s AND pull_number = %s"
                    " RETURNING 1",
                    (repository, number),
                )
            changed = await cur.fetchone() is not None
            if changed:
                await audit.record(
                    conn, actor=f"github:{login}", action=f"review.{name}d",
                    subject=f"github:{repository}#{number}", detail={"comment": comment_id},
                )  # fmt: skip
        if name == "pause":
            text = PAUSED if changed else ALREADY_PAUSED
        else:
            text = RESUMED if changed else NOT_PAUSED
        result = f"{name}d" if changed else f"{name}: nothing to do"
    if await first_time(pool, f"{name}:{comment_id}"):
        await client.rest.issues.async_create_comment(owner, repo, number, body=text)
    return result
