"""The description of a pull request: a summary, a walkthrough of its files and the risks,
in ONE issue comment that Persais edits on every push and never posts twice.

The comment is found again on GitHub, not in Persais's database: it is the App's own comment
(its bot login) whose body starts with MARKER. A lost database never makes a second one, and
a person's comment that copies the marker is never touched. One description is written at a
time per pull request (a Postgres advisory lock) and the comment is looked up inside the lock,
so two pushes close together edit one comment, the later head last.

Automatic on pull request events unless `review.describe: false` (or `review.enabled:
false`) on the default branch, the pull request is a draft or closed, or it is the Mechanic's
own (its body already says what it is). `/describe` writes it in any case.

With a model, the summary and the per-file lines are the model's (`describe_prompt`);
without one, or when it fails, they come from the diff alone (`describe_diff`) and the
comment says so. The risks the diff shows by itself (grants, migrations, workflows, ...)
are listed either way.
"""

from __future__ import annotations

import logging
import re
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

from githubkit import GitHub
from psycopg_pool import AsyncConnectionPool

from app import audit
from app.costs.books import Costs
from app.db import locks
from app.github.client import GitHubApp
from app.review import describe_diff, describe_prompt, pauses
from app.review import grants as review_grants
from app.review import model as model_review
from app.review.config import CONFIG_PATH, parse
from app.review.describe_diff import cell
from app.review.diff import Diff
from app.review.pull import PullOnGitHub
from mechanic.metering import BudgetReached
from mechanic.workspace import BRANCH_PREFIX

log = logging.getLogger(__name__)
MARKER = "<!-- persais:description -->"
_HEAD = re.compile(r"<!-- persais:head ([0-9a-f]{7,64}) -->")
MAX_BODY = 60_000  # GitHub takes 65,536 characters in a comment
MAX_MANIFESTS = 20
MAX_ROWS = 300  # files in the walkthrough
MAX_RISKS = 30


@dataclass(frozen=True)
class DescribeRequest:
    installation_id: int
    repository: str  # owner/name
    number: int
    trigger: str  # the webhook action, or "command"
    actor: str = "persais"  # who asked: "github:<login>" for /describe


@dataclass(frozen=True)
class Described:
    status: str  # written | edited | unchanged | skipped | failed
    reason: str = ""
    comment_id: int | None = None
    by_model: bool = False  # the summary and the file lines are the model's


class Describer:
    def __init__(
        self, pool: AsyncConnectionPool, github: GitHubApp, model: model_review.Model | None,
        *, costs: Costs | None = None,
    ) -> None:  # fmt: skip
        self.pool = pool
        self.github = github
        self.model = model
        self.costs = costs  # None: the model call is not counted, and no budget applies

    async def automatic(self, request: DescribeRequest) -> Described:
        """`describe` for a pull request event: its own step, so a failure is logged and
        never fails the review beside it."""
        try:
            return await self.describe(request)
        except Exception as exc:  # the description is extra; the review is what counts
            log.exception("could not describe %s#%s", request.repository, request.number)
            return Described("failed", type(exc).__name__)

    async def describe(self, request: DescribeRequest) -> Described:
        client = self.github.installation(request.installation_id)
        # The pull request is read inside the lock, so the last description written is of
        # the newest head; one HTTP client for the whole description.
        async with self._lock(request), client:
            first = PullOnGitHub(client, request.repository, request.number, "")
            pull = await first.get()
            on_github = PullOnGitHub(
                client, request.repository, request.number, str(pull["head"]["sha"])
            )
            if request.trigger != "command":
                why_not = await self._not_automatic(on_github, pull)
                if why_not:
                    return Described("skipped", why_not)
            described = await self._write(request, client, on_github, pull)
        async with self.pool.connection() as conn:
            await audit.record(
                conn, actor=request.actor, action=f"review.description_{described.status}",
                subject=f"github:{request.repository}#{request.number}",
                detail={"trigger": request.trigger, "comment": described.comment_id,
                        "head": on_github.head_sha, "by_model": described.by_model},
            )  # fmt: skip
        return described

    async def _not_automatic(self, github: PullOnGitHub, pull: dict[str, Any]) -> str:
        if pull.get("state") != "open":
            return "the pull request is closed"
        if pull.get("draft"):
            return "a draft: described when it is ready"
        if str(pull["head"]["ref"]).startswith(BRANCH_PREFIX):
            return "the Mechanic's own pull request keeps its body"
        if await pauses.paused(self.pool, f"{github.owner}/{github.repo}", github.number):
            return "paused with /pause"  # quiet means no edits either; /describe still works
        text, _ = await github.read(CONFIG_PATH, str(pull["base"]["repo"]["default_branch"]))
        review = parse(text).config.review  # a broken file: the reviewer says so
        if not review.enabled or not review.describe:
            return f"descriptions are off in {CONFIG_PATH}"
        return ""

    def _lock(self, request: DescribeRequest) -> AbstractAsyncContextManager[None]:
        return locks.held(self.pool, f"describe:{request.repository}#{request.number}")

    async def _write(
        self, request: DescribeRequest, client: GitHub[Any], github: PullOnGitHub,
        pull: dict[str, Any],
    ) -> Described:  # fmt: skip
        comment = DescriptionComment(client, github.owner, github.repo, github.number)
        found = await comment.find(await self.github.bot_login())
        if found is not None and request.trigger != "command":
            match = _HEAD.search(found[1])
            if match is not None and match.group(1) == github.head_sha:
                return Described("unchanged", "this head is described", found[0])
        entries = await github.files()
        diff = Diff.from_github(entries)
        body, by_model = await self._body(github, pull, diff, entries)
        if found is None:
            return Described("written", "", await comment.create(body), by_model)
        await comment.edit(found[0], body)
        return Described("edited", "", found[0], by_model)

    async def _body(
        self, github: PullOnGitHub, pull: dict[str, Any], diff: Diff,
        entries: list[dict[str, Any]],
    ) -> tuple[str, bool]:  # fmt: skip
        counts = describe_diff.counts(diff, entries)
        risks = describe_diff.risks(diff, await self._grant_findings(github, pull, diff))
        described, why_not = await self._ask_model(pull, diff)
        if described is None:
            summary = describe_diff.summary(diff, counts)
            note = f"_Written from the diff alone, without a model: {why_not}._"
            changes: dict[str, str] = {}
        else:
            summary, note, changes = described.summary, "", described.changes
            risks += described.risks
        walkthrough = describe_diff.walkthrough(diff, counts, changes)
        return compose(github.head_sha, summary, note, walkthrough, risks), described is not None

    async def _ask_model(
        self, pull: dict[str, Any], diff: Diff
    ) -> tuple[describe_prompt.ModelDescription | None, str]:
        """The model's description, or None and why not."""
        if self.model is None:
            return None, "no model is configured (LLM_API_KEY)"
        if not diff.files:
            return None, "the pull request changes no files"
        system, user, shown = describe_prompt.prompt(
            str(pull.get("title") or ""), str(pull.get("body") or ""), diff
        )
        subject = f"{pull['base']['repo']['full_name']}#{pull['number']}@{pull['head']['sha']}"
        books = (
            self.costs.account("describe", subject[:200])
            if self.costs is not None
            else nullcontext()
        )
        try:
            async with books:  # the call counted, and refused past the day's budget
                answer = await self.model.complete(user, json_output=True, system=system)
            return describe_prompt.read(answer, shown), ""
        except (describe_prompt.ModelAnswerUnusable, BudgetReached) as exc:
            log.warning("the model's description was not used: %s", exc)
            return None, str(exc)
        except Exception as exc:  # the model failing leaves the diff's own description
            log.warning("the model could not describe the pull request: %s", exc)
            return None, f"the model failed ({type(exc).__name__})"

    async def _grant_findings(
        self, github: PullOnGitHub, pull: dict[str, Any], diff: Diff
    ) -> list[str]:
        """What the changed agents' manifests ask for beyond the base branch's grants."""
        wanted = review_grants.manifests(diff)[:MAX_MANIFESTS]
        if not wanted:
            return []
        head = await github.contents(diff, wanted)
        base: dict[str, str] = {}
        for path in wanted:
            text, _ = await github.read(path, str(pull["base"]["ref"]))
            if text is not None:
                base[path] = text
        return [f"`{cell(f.path)}`: {f.message}" for f in review_grants.findings(diff, head, base)]


class DescriptionComment:
    """The description's issue comment on GitHub: found by its author and MARKER."""

    def __init__(self, client: GitHub[Any], owner: str, repo: str, number: int) -> None:
        self.client = client
        self.owner, self.repo, self.number = owner, repo, number

    async def find(self, bot_login: str) -> tuple[int, str] | None:
        """(id, body) of the App's own description comment, the oldest if there are more."""
        page = 1
        while True:
            response = await self.client.rest.issues.async_list_comments(
                self.owner, self.repo, self.number, per_page=100, page=page
            )
            batch: list[dict[str, Any]] = response.json()
            for item in batch:
                body = str(item.get("body") or "")
                if (item.get("user") or {}).get("login") == bot_login and body.startswith(MARKER):
                    return int(item["id"]), body
            if len(batch) < 100 or 'rel="next"' not in response.headers.get("link", ""):
                return None
            page += 1

    async def create(self, body: str) -> int:
        response = await self.client.rest.issues.async_create_comment(
            self.owner, self.repo, self.number, body=body
        )
        return int(response.json()["id"])

    async def edit(self, comment_id: int, body: str) -> None:
        await self.client.rest.issues.async_update_comment(
            self.owner, self.repo, comment_id, body=body
        )


def compose(head: str, summary: str, note: str, walkthrough: list[str], risks: list[str]) -> str:
    """The comment's text, MARKER first, within GitHub's size limit: the walkthrough's last
    rows give way first (and past MAX_ROWS)."""
    top = [MARKER, f"<!-- persais:head {head} -->", "## Pull request description", "",
           summary, ""]  # fmt: skip
    if note:
        top += [note, ""]
    bottom = ["", "### Risks", ""]
    bottom += [f"- {risk}" for risk in risks[:MAX_RISKS]] or ["- None the diff shows by itself."]
    if len(risks) > MAX_RISKS:
        bottom.append(f"- …and {len(risks) - MAX_RISKS} more.")
    bottom += ["", f"<sub>Describes {head[:7]}; edited on every push. `/describe` brings it "
               "up to date.</sub>"]  # fmt: skip
    header, rows = walkthrough[:2], walkthrough[2:]
    room = MAX_BODY - len("\n".join([*top, *bottom, *header])) - 200
    kept: list[str] = []
    for row in rows[:MAX_ROWS]:
        room -= len(row) + 1
        if room < 0:
            break
        kept.append(row)
    table = ["### Walkthrough", "", *header, *kept]
    if len(rows) > len(kept):
        table.append(f"\n…and {len(rows) - len(kept)} more files.")
    return "\n".join(top + table + bottom)
