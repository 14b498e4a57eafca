"""`/console/pulls`: the home repository's pull requests on the local forge and the GitHub
pull requests Persais reviewed, newest first, a page at a time, by state and by forge.
`/console/pulls/{n}`: a local pull request — its body, checks, the job that made it, and
its change file by file, coloured (the page [View PR] opens on the local forge).
`/console/pulls/github/{owner}/{repo}/{n}`: what Persais's reviews said, and the link."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from psycopg.rows import dict_row
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from app.console import diff
from app.console.web import Console
from app.settings import CHECKOUT_ROOT, Settings

if TYPE_CHECKING:  # the forge reads git through mechanic's helpers: loaded on first use, so
    # the web-only process starts without them (tests/test_layering.py)
    from app.forge.local import LocalForge
    from app.forge.local_pulls import PullRecord

NAV = [("Pull requests", "/console/pulls")]
PAGE_SIZE = 50
STATES = ("open", "merged", "closed")  # the local forge's
FORGES = ("local", "github")
PATCH_BYTES = 4_000_000  # read of one pull request's diff: past it, the rest is not shown
MAX_FILES = 300
PAGE_LINES = 10_000  # diff lines on one page, all files together
COLOUR_LINES = 4_000  # of which coloured; the rest escaped plain
LARGEST = 2**31 - 1  # a pull request's number is an integer column
VERDICTS = {"success": "no problems found", "neutral": "warnings", "failure": "problems found"}


@dataclass(frozen=True)
class Filters:
    state: str | None = None
    forge: str | None = None
    page: int = 1

    def query(self, **more: Any) -> str:
        given = {"state": self.state, "forge": self.forge, **more}
        return urlencode({k: v for k, v in given.items() if v})


def filters_of(params: Mapping[str, str]) -> tuple[Filters, str | None]:
    """The filters a request asks for, and what was wrong with them (then ignored)."""
    state = params.get("state") or None
    forge = params.get("forge") or None
    page = params.get("page") or "1"
    if state is not None and state not in STATES:
        return Filters(), f"There is no state {state!r}: it is one of {', '.join(STATES)}."
    if forge is not None and forge not in FORGES:
        return Filters(), f"There is no forge {forge!r}: it is local or github."
    if not page.isdigit() or not 1 <= int(page) <= 100_000:
        return Filters(state, forge), f"{page[:20]!r} is not a page number."
    return Filters(state, forge, int(page)), None


# A GitHub pull request's row is its latest review (reviews_pull_idx serves the DISTINCT ON);
# its state on GitHub is not known here, so a state filter lists the local forge's alone.
LISTING = """
SELECT * FROM (
    SELECT 'local' AS forge, p.repository, p.number, p.state, p.title, p.branch, p.base,
           p.updated_at, j.id AS job_id, NULL::text AS review, NULL::text AS conclusion,
           NULL::int AS findings
    FROM pull_requests AS p LEFT JOIN jobs AS j ON j.id = p.job_id
    WHERE p.repository = %(repository)s AND (%(state)s::text IS NULL OR p.state = %(state)s)
      AND (%(forge)s::text IS NULL OR %(forge)s = 'local')
    UNION ALL
    SELECT 'github', repository, pull_number, NULL, NULL, NULL, NULL,
           coalesce(finished_at, started_at, created_at), NULL, status, conclusion,
           findings
    FROM (SELECT DISTINCT ON (repository, pull_number) * FROM reviews
          ORDER BY repository, pull_number, id DESC) AS latest
    WHERE %(state)s::text IS NULL AND (%(forge)s::text IS NULL OR %(forge)s = 'github')
) AS pulls
ORDER BY updated_at DESC, number DESC LIMIT %(limit)s OFFSET %(offset)s
"""


def github_web(settings: Settings) -> str:
    """GitHub's web address for its API's: github.com, an Enterprise Server's
    `https://HOST` for `https://HOST/api/v3`, or a test server that answers both."""
    api = settings.github_api_url.rstrip("/")
    if api == "https://api.github.com":
        return "https://github.com"
    return api.removesuffix("/api/v3")


def routes(console: Console) -> list[BaseRoute]:
    name = "persais"  # the local forge's repository (LocalForge's default name)
    shown_files = ShownFiles()

    async def listing(request: Request) -> Response:
        filters, problem = filters_of(request.query_params)
        async with console.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(LISTING, {
                "repository": name, "state": filters.state, "forge": filters.forge,
                "limit": PAGE_SIZE + 1, "offset": (filters.page - 1) * PAGE_SIZE,
            })  # fmt: skip
            rows = await cur.fetchall()
        web = github_web(console.settings)
        for row in rows:
            row["href"] = (
                f"/console/pulls/{row['number']}" if row["forge"] == "local"
                else f"/console/pulls/github/{row['repository']}/{row['number']}"
            )  # fmt: skip
            row["github"] = f"{web}/{row['repository']}/pull/{row['number']}"
            row["verdict"] = VERDICTS.get(row["conclusion"] or "", row["review"])
        more = len(rows) > PAGE_SIZE
        return console.page(
            request, "pulls.html", title="Pull requests", rows=rows[:PAGE_SIZE],
            filters=filters, problem=problem, states=STATES, page=filters.page,
            newer=filters.query(page=filters.page - 1 if filters.page > 2 else None)
            if filters.page > 1 else None,
            older=filters.query(page=filters.page + 1) if more else None,
        )  # fmt: skip

    async def local(request: Request) -> Response:
        from app.forge import local_pulls
        from app.forge.local import LocalForge

        number = request.path_params["number"]
        forge = LocalForge(console.pool, console.settings.home, CHECKOUT_ROOT, name)
        try:
            if number > LARGEST:
                raise LookupError(number)
            pull = await local_pulls.record(forge, number)
        except LookupError:
            return missing(request, f"There is no pull request #{number} on the local forge.")
        files, problem, cut = await changed_files(forge, pull, shown_files)
        return console.page(
            request, "pulls_local.html", title=f"#{number} {pull.summary.title}", pull=pull,
            files=files, problem=problem, cut=cut, page_lines=PAGE_LINES,
        )  # fmt: skip

    async def github(request: Request) -> Response:
        owner, repo = request.path_params["owner"], request.path_params["repo"]
        number = request.path_params["number"]
        repository = f"{owner}/{repo}"
        if number > LARGEST:
            return missing(request, f"Persais has not reviewed {repository}#{number}.")
        async with console.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                "SELECT id, head_sha, since_sha, trigger, status, reason, conclusion, comments,"
                " findings, created_at, finished_at FROM reviews"
                " WHERE repository = %s AND pull_number = %s ORDER BY id DESC LIMIT 20",
                (repository, number),
            )
            reviews = await cur.fetchall()
            await cur.execute(
                "SELECT path, line, severity FROM review_findings"
                " WHERE repository = %s AND pull_number = %s"
                " ORDER BY path, line NULLS FIRST LIMIT 200",
                (repository, number),
            )
            findings = await cur.fetchall()
        if not reviews:
            return missing(request, f"Persais has not reviewed {repository}#{number}.")
        for review in reviews:
            review["verdict"] = VERDICTS.get(review["conclusion"] or "", review["status"])
        return console.page(
            request, "pulls_github.html", title=f"{repository}#{number}",
            repository=repository, number=number, reviews=reviews, findings=findings,
            link=f"{github_web(console.settings)}/{repository}/pull/{number}",
        )  # fmt: skip

    def missing(request: Request, text: str) -> Response:
        return console.page(request, "pulls_missing.html", status=404, title="Not found",
                            text=text)  # fmt: skip

    return [
        Route("/pulls", listing, methods=["GET"]),
        Route("/pulls/{number:int}", local, methods=["GET"]),
        Route("/pulls/github/{owner:str}/{repo:str}/{number:int}", github, methods=["GET"]),
    ]


async def changed_files(
    forge: LocalForge, pull: PullRecord, shown: ShownFiles
) -> tuple[list[diff.FileDiff], str | None, bool]:
    """The pull request's files as the page shows them (capped and coloured), what kept
    them from being read, and whether the change was cut short."""
    from app.forge import local_pulls
    from mechanic.workspace import GitError

    if not (forge.bare / "HEAD").exists():
        return [], "The local forge's repository is not on this machine.", False
    try:
        text, cut = await local_pulls.patch(forge, pull, limit=PATCH_BYTES)
    except (LookupError, GitError) as exc:
        return [], f"The change cannot be read: {exc}.", False
    files, more = shown.files(text)
    return files, None, cut or more


class ShownFiles:
    """The files of the changes read lately, as a page shows them. A patch between two
    commits never changes, and colouring is the slow part (pygments: ~0.1 ms a line), so
    a pull request read again is parsed and coloured once."""

    def __init__(self, keep: int = 8) -> None:
        self.keep = keep
        self._kept: OrderedDict[bytes, tuple[list[diff.FileDiff], bool]] = OrderedDict()

    def files(self, patch: str) -> tuple[list[diff.FileDiff], bool]:
        """The files (capped, coloured) and whether some were left out."""
        key = hashlib.sha256(patch.encode()).digest()
        if key in self._kept:
            self._kept.move_to_end(key)
            return self._kept[key]
        files = diff.parse(patch)
        more = len(files) > MAX_FILES
        files = files[:MAX_FILES]
        room = PAGE_LINES
        for file in files:
            if len(file.lines) > room:
                file.lines, file.truncated = file.lines[: max(room, 0)], True
            room -= len(file.lines)
        diff.colour(files, budget=COLOUR_LINES)
        self._kept[key] = (files, more)
        if len(self._kept) > self.keep:
            self._kept.popitem(last=False)
        return files, more
