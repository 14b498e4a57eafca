"""Hidden fingerprints: what Persais said on a pull request, written into what it posts and
read back from GitHub on every review, so nothing is raised twice even if Persais's own
database is lost.

Every inline comment ends with one `<!-- persais:fp=<hex> -->` per finding it carries (two
findings on one line are one comment), and the review body ends with the fingerprints of
the findings it lists (not on a changed line, or in the digest). Only a trailing block of
such markers counts, and only in what the App's own bot user wrote: a fingerprint quoted
anywhere else, by a pull request's author or by the model echoing the pull request, is text.

A fingerprint is dismissed when a thread of the App's comment was answered `/ignore`, or
the comment got a 👎, by someone who may write to the repository. Dismissed findings no
longer count for the check run either. Resolving a thread needs GraphQL to see; it needs
no reading, because every posted fingerprint is suppressed anyway.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from githubkit import GitHub

from app.github import commands

_MARK = "<!-- persais:fp={} -->"
_ONE = re.compile(r"<!--\s*persais:fp=([0-9a-f]{32})\s*-->")
_TRAILING = re.compile(r"(?:\s*<!--\s*persais:fp=[0-9a-f]{32}\s*-->)+\s*\Z")
MAX_PAGES = 30  # 3000 comments, 3000 reviews: more than any pull request people read


def hide(text: str, fingerprints: Iterable[str]) -> str:
    """`text` with `fingerprints` as a trailing block of HTML comments (invisible on
    GitHub)."""
    marks = "".join(_MARK.format(fp) for fp in fingerprints)
    return f"{text}\n\n{marks}" if marks else text


def split(body: str) -> tuple[str, list[str]]:
    """(the visible text, the fingerprints of its trailing block)."""
    found = _TRAILING.search(body)
    if found is None:
        return body, []
    return body[: found.start()], _ONE.findall(found.group(0))


def parse(body: str) -> list[str]:
    return split(body)[1]


def defuse(text: str) -> str:
    """Text going into a comment cannot open an HTML comment (so it cannot forge a
    fingerprint, nor hide the rest of the comment)."""
    return text.replace("<!--", "&lt;!--")


@dataclass
class OnGitHub:
    """What the App's comments and reviews on one pull request say, as GitHub holds it."""

    posted: set[str] = field(default_factory=set)
    dismissed: set[str] = field(default_factory=set)  # /ignore or 👎 from a writer
    threads: dict[int, list[str]] = field(default_factory=dict)  # comment id -> fingerprints


MayWrite = Callable[[str], Awaitable[bool]]


async def read_back(
    client: GitHub[Any], repository: str, number: int, *, bot: str, may_write: MayWrite
) -> OnGitHub:
    """Read the pull request's review comments and reviews written by `bot` (the App's
    login); a dismissal counts only if `may_write(login)` says its author may write."""
    owner, repo = repository.split("/", 1)
    comments = await _all(
        lambda page: client.rest.pulls.async_list_review_comments(
            owner, repo, number, per_page=100, page=page
        )
    )
    found, asked, frowned = _from_comments(comments, bot)
    for comment_id in frowned:  # the rollup counts a 👎; the list says whose
        for reaction in await _frowns(client, owner, repo, comment_id):
            who = str((reaction.get("user") or {}).get("login") or "")
            asked.setdefault(comment_id, set()).add(who)
    reviews = await _all(
        lambda page: client.rest.pulls.async_list_reviews(
            owner, repo, number, per_page=100, page=page
        )
    )
    for review in reviews:
        if str((review.get("user") or {}).get("login") or "") == bot:
            found.posted.update(parse(str(review.get("body") or "")))
    writers: dict[str, bool] = {}
    for thread, logins in asked.items():
        for login in sorted(logins - {"", bot}):
            if login not in writers:
                writers[login] = await may_write(login)
            if writers[login]:
                found.dismissed.update(found.threads[thread])
                break
    return found


def _from_comments(
    comments: list[dict[str, Any]], bot: str
) -> tuple[OnGitHub, dict[int, set[str]], list[int]]:
    """What `bot`'s comments said; who answered `/ignore` in the thread of one of them that
    carries fingerprints (by its id); and which of those have a 👎."""
    found = OnGitHub()
    replies: list[tuple[int, str]] = []
    frowned: list[int] = []
    for comment in comments:
        login = str((comment.get("user") or {}).get("login") or "")
        body = str(comment.get("body") or "")
        if login == bot:
            prints = parse(body)
            if prints:
                found.posted.update(prints)
                found.threads[int(comment["id"])] = prints
                if int((comment.get("reactions") or {}).get("-1") or 0) > 0:
                    frowned.append(int(comment["id"]))
            continue
        command = commands.parse(body)
        if comment.get("in_reply_to_id") and command is not None and command.name == "ignore":
            replies.append((int(comment["in_reply_to_id"]), login))
    asked: dict[int, set[str]] = {}
    for thread, login in replies:
        if thread in found.threads:  # not a person's comment, nor one without fingerprints
            asked.setdefault(thread, set()).add(login)
    return found, asked, frowned


async def _frowns(client: GitHub[Any], owner: str, repo: str, comment_id: int) -> list[Any]:
    return await _all(
        lambda page: client.rest.reactions.async_list_for_pull_request_review_comment(
            owner, repo, comment_id, content="-1", per_page=100, page=page
        )
    )


async def _all(page_of: Callable[[int], Awaitable[Any]]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for page in range(1, MAX_PAGES + 1):
        response = await page_of(page)
        batch = response.json()
        items += batch
        if len(batch) < 100 or 'rel="next"' not in response.headers.get("link", ""):
            break
    return items
