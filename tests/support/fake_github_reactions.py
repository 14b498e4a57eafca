"""Reactions on the fake GitHub, as GitHub's REST docs describe them.

- A comment's `reactions` rollup (`total_count` and one count per content) is in every
  answer that carries the comment, lists included, and it counts every reaction, the App's
  own too (`tally`, called where the fake stores a reaction).
- `GET /repos/{owner}/{repo}/pulls/comments/{comment_id}/reactions` lists a review comment's
  reactions, optionally only one `content`, paged (30 by default, 100 at most).
- A person reacting on github.com (`react`) is stored and counted, and nothing is delivered:
  GitHub has no webhook for reactions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from tests.support import fake_github_objects as objects
from tests.support.fake_github_objects import Json

if TYPE_CHECKING:
    from tests.support.fake_github import FakeGitHub

SUBJECTS = {"pull_request_review_comment": "review_comments", "issue_comment": "issue_comments"}


def tally(fake: FakeGitHub, subject: str, comment_id: int, content: str) -> None:
    """Count a new reaction in its comment's rollup."""
    records: list[Json] = getattr(fake, SUBJECTS[subject])
    comment = next((c for c in records if c["id"] == comment_id), None)
    if comment is None or not isinstance(comment.get("reactions"), dict):
        return
    rollup = comment["reactions"]
    rollup[content] = int(rollup.get(content) or 0) + 1
    rollup["total_count"] = int(rollup.get("total_count") or 0) + 1


def react(fake: FakeGitHub, full: str, comment_id: int, content: str, user: str) -> Json:
    """`user` reacts with `content` to review comment `comment_id` on github.com (once per
    person and content, as GitHub allows); no webhook follows."""
    with fake.lock:
        comment = next(
            (c for c in fake.review_comments if c["id"] == comment_id and c["_repo"] == full),
            None,
        )
        if comment is None:
            raise ValueError(f"no review comment {comment_id} on {full}")
        for existing in fake.reactions:
            mine = (existing["_subject"], existing["_comment_id"], existing["content"])
            if mine == ("pull_request_review_comment", comment_id, content) and (
                existing["user"]["login"] == user
            ):
                return existing
        made = objects.reaction(fake.base_url, next(fake._ids), user, content)
        made.update(_subject="pull_request_review_comment", _comment_id=comment_id)
        fake.reactions.append(made)
        tally(fake, "pull_request_review_comment", comment_id, content)
    return made


def add_reaction_routes(router: web.UrlDispatcher, fake: FakeGitHub) -> None:
    async def list_for_review_comment(request: web.Request) -> web.Response:
        repo = fake._repo(request)
        comment = fake._stored(fake.review_comments, repo, request)
        content = request.query.get("content")
        found = [
            {k: v for k, v in r.items() if not k.startswith("_")}
            for r in fake.reactions
            if r["_subject"] == "pull_request_review_comment"
            and r["_comment_id"] == comment["id"]
            and (content is None or r["content"] == content)
        ]
        chunk, headers = fake._page(request, found)
        return web.json_response(chunk, headers=headers)

    router.add_get(
        "/repos/{owner}/{repo}/pulls/comments/{comment_id:\\d+}/reactions", list_for_review_comment
    )
