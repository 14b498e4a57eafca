"""`/ignore` in the thread of a Persais review comment: not this finding again on this pull
request, from someone who may write here (checked before a command is dispatched).

GitHub already holds the dismissal (the reply), and each review reads it back
(`fingerprints.read_back`), so it holds even if Persais's database is lost; the row kept here
is for the console and for the check run's verdict. A 👎 on the comment does the same, read
back the same way (GitHub sends no webhook for a reaction).
"""

from __future__ import annotations

from typing import Any

from githubkit import GitHub
from githubkit.exception import RequestFailed
from psycopg_pool import AsyncConnectionPool

from app import audit
from app.github.once import first_time
from app.review import fingerprints

WHERE = (
    "`/ignore` works as a reply in the thread of a Persais review comment (or put 👎 on the "
    "comment): that finding is then not raised again on this pull request."
)


async def command(
    pool: AsyncConnectionPool,
    client: GitHub[Any],
    repository: str,
    number: int,
    comment: dict[str, Any],
    *,
    login: str,
    bot: str,
) -> str:
    """Dismiss the findings of the Persais comment that `comment` (a reply) answers; a 👍
    on the reply says so. Anywhere else, one comment says where `/ignore` works."""
    owner, repo = repository.split("/", 1)
    comment_id = int(comment["id"])
    thread = int(comment.get("in_reply_to_id") or 0)  # the thread's first comment
    prints: list[str] = []
    if thread:
        original = await _review_comment(client, owner, repo, thread)
        if original is not None and str((original.get("user") or {}).get("login")) == bot:
            prints = fingerprints.parse(str(original.get("body") or ""))
    if not prints:
        if await first_time(pool, f"ignore:{comment_id}"):
            await client.rest.issues.async_create_comment(owner, repo, number, body=WHERE)
        return "ignore: not a thread of a Persais finding"
    async with pool.connection() as conn, conn.transaction():
        new = 0
        for fingerprint in prints:
            cur = await conn.execute(
                "INSERT INTO review_ignores (repository, pull_number, fingerprint, ignored_by,"
                " comment_id) VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING 1",
                (repository, number, fingerprint, f"github:{login}", thread),
            )
            new += await cur.fetchone() is not None
        if new:  # a retried delivery is not audited twice
            await audit.record(
                conn, actor=f"github:{login}", action="review.ignored",
                subject=f"github:{repository}#{number}",
                detail={"comment": thread, "reply": comment_id, "fingerprints": prints},
            )  # fmt: skip
    await client.rest.reactions.async_create_for_pull_request_review_comment(
        owner, repo, comment_id, content="+1"
    )
    return f"ignored: {len(prints)} finding(s)"


async def _review_comment(
    client: GitHub[Any], owner: str, repo: str, comment_id: int
) -> dict[str, Any] | None:
    try:
        response = await client.rest.pulls.async_get_review_comment(owner, repo, comment_id)
    except RequestFailed as exc:
        if exc.response.status_code == 404:
            return None
        raise
    return dict(response.json())
