"""One pull request on GitHub, as the reviewer reads and writes it: the pull request, its
files, what changed since an earlier head, file contents, the check run, the review."""

from __future__ import annotations

import asyncio
import base64
import logging
from datetime import UTC, datetime
from typing import Any, Literal, cast

from githubkit import GitHub
from githubkit.exception import RequestFailed

from app.review import fingerprints
from app.review.compose import Comment
from app.review.diff import Diff

log = logging.getLogger(__name__)
CHECK_NAME = "persais/review"
CheckConclusion = Literal["success", "neutral", "failure", "cancelled"]


class PullOnGitHub:
    def __init__(self, client: GitHub[Any], repository: str, number: int, head_sha: str) -> None:
        self.client = client
        self.owner, self.repo = repository.split("/", 1)
        self.number = number
        self.head_sha = head_sha

    async def get(self) -> dict[str, Any]:
        response = await self.client.rest.pulls.async_get(self.owner, self.repo, self.number)
        return cast(dict[str, Any], response.json())

    async def read(self, path: str, ref: str) -> tuple[str | None, str | None]:
        """A file's text at `ref` and its blob sha; (None, None) when it is not there."""
        try:
            response = await self.client.rest.repos.async_get_content(
                self.owner, self.repo, path, ref=ref
            )
        except RequestFailed as exc:
            if exc.response.status_code == 404:
                return None, None
            raise
        data: Any = response.json()
        if not isinstance(data, dict) or data.get("type") != "file" or not data.get("content"):
            return None, None
        try:
            return base64.b64decode(data["content"]).decode(), str(data.get("sha"))
        except (ValueError, UnicodeDecodeError):
            return None, None

    async def comment(self, body: str) -> None:
        await self.client.rest.issues.async_create_comment(
            self.owner, self.repo, self.number, body=body
        )

    async def files(self) -> list[dict[str, Any]]:
        files: list[dict[str, Any]] = []
        page = 1
        while True:  # up to 3000 files, 100 a page
            response = await self.client.rest.pulls.async_list_files(
                self.owner, self.repo, self.number, per_page=100, page=page
            )
            batch = response.json()
            files += batch
            if len(batch) < 100 or 'rel="next"' not in response.headers.get("link", ""):
                return files
            page += 1

    async def changed_since(self, since: str) -> list[str] | None:
        """The paths changed from `since` to the head; None when `since` is not an ancestor
        (a force-push) or is gone."""
        try:
            response = await self.client.rest.repos.async_compare_commits(
                self.owner, self.repo, f"{since}...{self.head_sha}"
            )
        except RequestFailed as exc:
            if exc.response.status_code == 404:
                return None
            raise
        data = response.json()
        if data.get("status") not in ("ahead", "identical"):
            return None
        return [str(f["filename"]) for f in data.get("files") or []]

    async def contents(self, diff: Diff, paths: list[str]) -> dict[str, str]:
        """The head's text of `paths`: an added file's from its patch (it holds all of it),
        the others fetched, eight at a time."""
        contents: dict[str, str] = {}
        fetch: list[str] = []
        for path in paths:
            file = diff.get(path)
            if file is not None and file.status == "added" and file.patch is not None:
                contents[path] = _added_text(file.patch)
            else:
                fetch.append(path)
        limit = asyncio.Semaphore(8)

        async def one(path: str) -> None:
            async with limit:
                text, _ = await self.read(path, self.head_sha)
            if text is not None:
                contents[path] = text

        await asyncio.gather(*(one(p) for p in fetch))
        return contents

    async def start_check_run(self) -> int:
        response = await self.client.rest.checks.async_create(
            self.owner, self.repo, name=CHECK_NAME, head_sha=self.head_sha,
            status="in_progress", started_at=datetime.now(UTC),
            output={"title": "Reviewing", "summary": "Persais is reviewing this head."},
        )  # fmt: skip
        return int(response.json()["id"])

    async def conclude_check_run(
        self, check_run_id: int, conclusion: CheckConclusion, title: str, summary: str
    ) -> None:
        await self.client.rest.checks.async_update(
            self.owner, self.repo, check_run_id, status="completed", conclusion=conclusion,
            completed_at=datetime.now(UTC), output={"title": title, "summary": summary[:65_000]},
        )  # fmt: skip

    async def post_review(self, body: str, comments: list[Comment]) -> int:
        """One COMMENT review; if GitHub refuses a line we thought was in the diff, the
        comments go into the summary instead."""
        inline = [c.as_github() for c in comments]
        try:
            response = await self.client.rest.pulls.async_create_review(
                self.owner, self.repo, self.number, commit_id=self.head_sha,
                body=body, event="COMMENT", comments=inline,
            )  # fmt: skip
        except RequestFailed as exc:
            if exc.response.status_code != 422 or not inline:
                raise
            log.warning("GitHub refused the inline comments: %s", exc.response.text[:300])
            # The comments' hidden fingerprints join the body's, at its end (read back there).
            text, prints = fingerprints.split(body)
            extra = "\n".join(
                f"- `{c.path}:{c.line}`: {fingerprints.split(c.body)[0].strip()}" for c in comments
            )
            prints += [fp for c in comments for fp in c.fingerprints]
            response = await self.client.rest.pulls.async_create_review(
                self.owner, self.repo, self.number, commit_id=self.head_sha,
                body=fingerprints.hide(text.rstrip() + "\n\n### Findings\n\n" + extra, prints),
                event="COMMENT",
            )  # fmt: skip
        return int(response.json()["id"])


def _added_text(patch: str) -> str:
    lines = [line[1:] for line in patch.splitlines() if line.startswith("+")]
    newline = "" if patch.rstrip().endswith("\\ No newline at end of file") else "\n"
    return "\n".join(lines) + newline
