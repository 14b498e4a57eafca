"""A local GitHub for the endpoints Persais calls, as GitHub answers them, backed by real
bare git repositories.

It checks what GitHub checks: the App's JWT is verified with the App's *public* key (RS256,
`iss` the App id, at most ten minutes long, not expired); installation tokens it handed out
are required everywhere else, and only for their own installation's repositories (404
otherwise). Objects are built from the published `@octokit/webhooks-examples` payloads
(`fake_github_objects`), so githubkit parses real shapes.

What it imitates:
- repositories, pull requests (list, open, get, update, merge — a real merge, squash or
  rebase in the bare repository), their files (`git diff` from the merge base, renames,
  binary files without a patch, `Link` pagination) and comparisons;
- reviews and review comments, validated against the diff as GitHub does (422 for a line
  outside it), replies, one review comment by id, issue comments, reactions (counted in the
  comments' rollups, listed, a person's: `fake_github_reactions`), check runs,
  file contents, branch deletion, and the App's webhook deliveries (cursor pagination,
  redelivery);
- the git database (commits, trees, a branch moved only as a fast-forward unless forced)
  and pull requests from forks (`fake_github_contents`);
- git over smart HTTP on the same server (`fake_git_http`), with `x-access-token:<token>`;
- the App manifest flow: the "new App" form and the code's conversion
  (`fake_github_manifests`, in `manifest_apps`);
- the App's OAuth client: the web application flow for user access tokens, `GET /user`, and
  a person's own permission asked with their token (`fake_github_oauth`, in `oauth`);
- webhook payloads for tests that post deliveries to the app, and, when `hook_url` is set,
  the App's webhooks delivered there as GitHub delivers them (`deliver`): signed, in the
  background after the answer that caused them, in order, once, each listed in the hook's
  deliveries (a failed one too, with status code 0) and sent again when redelivery is asked.

What is delivered when `hook_url` is set: `pull_request` (opened, closed, reopened,
synchronize), `issue_comment.created` (the App's own comments too, as GitHub sends them),
`pull_request_review_comment.created` for a person's reply (`reply_to_review_comment`), and
`push` for every branch that moves, is created or is deleted, whatever moved it: `push(...)`,
a merge through the API, git over smart HTTP, deleting a branch through the API
(`push_payload` has the shape). A push is delivered before the `synchronize` it causes; a
merge delivers `pull_request.closed`, then the base branch's `push`. Tags are not followed.

Everything the App creates is authored by its bot user, `persais[bot]`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import itertools
import json
import math
import secrets
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support import fake_github_objects as objects
from tests.support.fake_git_http import http_backend
from tests.support.fake_github_contents import add_git_data_routes
from tests.support.fake_github_manifests import ManifestApps, add_manifest_routes
from tests.support.fake_github_oauth import OAuthClient, add_oauth_routes
from tests.support.fake_github_objects import BOT_LOGIN, Json, Pull, Repo, now
from tests.support.fake_github_reactions import add_reaction_routes, tally
from tests.support.fake_github_repos import BareRepo, CommitInfo, DiffLine, FileChange
from tests.support.loopback import serve
from tests.support.webhooks import GITHUB_SECRET, example, github_headers

__all__ = ["APP_ID", "BOT_LOGIN", "FakeGitHub", "app_key_pair", "fake_github"]

APP_ID = 123456
MAX_FILES = 3000
HOOK_TIMEOUT = 10.0  # seconds GitHub waits for the webhook's answer
ZERO_SHA = "0" * 40
# GitHub documents 20 commits at most in `push.commits` for timeline events (and far more for
# webhooks); the fake keeps 20, the newest, so the App must not rely on seeing them all.
PUSH_COMMITS = 20
REACTIONS = frozenset({"+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes"})
REVIEW_STATES = {
    "COMMENT": "COMMENTED",
    "REQUEST_CHANGES": "CHANGES_REQUESTED",
    "APPROVE": "APPROVED",
    None: "PENDING",
}
# Keys of stored records that are the fake's own bookkeeping, never answered.
PRIVATE = frozenset(
    {"_repo", "_number", "_subject", "_comment_id", "_annotations", "_payload", "_hook", "comments"}
)


def app_key_pair() -> tuple[str, str]:
    """A fresh RSA key pair for a test App: (private PEM, public PEM)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


@dataclass
class Call:
    method: str
    path: str
    auth: str  # "jwt", "installation:<id>", or "none"
    at: float


@dataclass
class Outgoing:
    """A webhook waiting to be sent: its body as it will be signed and sent."""

    guid: str
    event: str
    payload: Json
    body: bytes
    url: str
    secret: str
    redelivery: bool = False


class Unprocessable(Exception):
    """A 422 as GitHub writes it: `message` and `errors`."""

    def __init__(self, errors: list[Any], message: str = "Validation Failed") -> None:
        super().__init__(message)
        self.message, self.errors = message, errors


@dataclass
class FakeGitHub:
    public_key: str
    app_id: int = APP_ID
    installations: dict[str, int] = field(default_factory=dict)  # "owner/repo" -> id
    permissions: dict[tuple[str, str], str] = field(default_factory=dict)  # (repo, user) -> role
    # An organisation's custom roles: name -> the base permission GitHub reports for it
    # (admin, write or read); a role named here is answered as GitHub answers a custom one.
    custom_roles: dict[str, str] = field(default_factory=dict)
    tokens: dict[str, tuple[int, float]] = field(default_factory=dict)  # token -> (id, expiry)
    calls: list[Call] = field(default_factory=list)
    # Failures to give before answering: path fragment (or "METHOD fragment") ->
    # [(status, headers), ...]
    failures: dict[str, list[tuple[int, dict[str, str]]]] = field(default_factory=dict)
    # Where bare repositories live and git's HOME; set by `fake_github`.
    root: Path = field(default_factory=lambda: Path(tempfile.gettempdir()))
    home: Path = field(default_factory=lambda: Path(tempfile.gettempdir()))
    base_url: str = ""
    repos: dict[str, Repo] = field(default_factory=dict)
    pulls: dict[tuple[str, int], Pull] = field(default_factory=dict)
    reviews: list[Json] = field(default_factory=list)  # each with its "comments"
    review_comments: list[Json] = field(default_factory=list)
    issue_comments: list[Json] = field(default_factory=list)
    check_runs: list[Json] = field(default_factory=list)
    reactions: list[Json] = field(default_factory=list)  # with "_subject", "_comment_id"
    merges: list[Json] = field(default_factory=list)
    deliveries: list[Json] = field(default_factory=list)
    redelivered: list[int] = field(default_factory=list)
    manifest_apps: ManifestApps = field(default_factory=ManifestApps)
    oauth: OAuthClient = field(default_factory=OAuthClient)
    # The App's webhook: deliveries go there when set (see `deliver`), none when None.
    hook_url: str | None = None
    hook_secret: str = GITHUB_SECRET
    lock: threading.RLock = field(default_factory=threading.RLock)
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1001))
    # The sender of webhooks, on the server's loop; set up by the server (`_start_hooks`).
    _loop: asyncio.AbstractEventLoop | None = field(default=None, repr=False)
    _outbox: asyncio.Queue[Outgoing | None] | None = field(default=None, repr=False)
    _sender: asyncio.Task[None] | None = field(default=None, repr=False)

    def calls_to(self, fragment: str) -> list[Call]:
        return [c for c in self.calls if fragment in c.path]

    # === test helpers ====================================================================

    def add_repo(
        self,
        full_name: str,
        installation_id: int = 77,
        *,
        files: dict[str, str | bytes] | None = None,
        source: Path | None = None,
        default_branch: str = "main",
    ) -> Path:
        """A bare repository under the installation: `files` as its first commit, or a
        bare clone of `source`; returns its path."""
        path = self.root / f"{full_name}.git"
        git = BareRepo.create(path, self.home, default_branch, source)
        if files is not None:
            git.commit(default_branch, dict(files), message="Initial commit", parent=None)
        repo = Repo(full_name, next(self._ids) + 500_000, installation_id, git, default_branch)
        repo.tips = _tips(git)
        self.repos[full_name] = repo
        self.installations[full_name] = installation_id
        return path

    def push(
        self,
        full_name: str,
        branch: str,
        changes: dict[str, str | bytes | None],
        *,
        message: str = "change",
        base: str | None = None,
        renames: dict[str, str] | None = None,
        sender: str = "octocat",
    ) -> str:
        """Commit on `branch` (new branches start at `base` or the default branch) as a push
        by `sender` would: its `push` is delivered, and open pull requests from it follow
        (`pull_request.synchronize`). Returns the new sha."""
        repo = self.repos[full_name]
        with self.lock:
            parent = repo.git.branch(branch) or repo.git.resolve(base or repo.default_branch)
            sha = repo.git.commit(branch, changes, message=message, parent=parent, renames=renames)
            self._sync_heads(repo, sender)
        return sha

    def open_pull(
        self,
        full_name: str,
        head: str,
        *,
        base: str | None = None,
        title: str = "A change",
        body: str = "",
        user: str = "octocat",
        draft: bool = False,
    ) -> int:
        """`user` opens a pull request on github.com (`pull_request.opened`)."""
        repo = self.repos[full_name]
        with self.lock:
            pull = self._open(repo, head, base or repo.default_branch, title, body, user, draft)
            self._pull_event(pull, "opened", user)
        return pull.number

    def open_issue(self, full_name: str) -> int:
        """An issue's number (issues and pull requests share one sequence, as on GitHub);
        comments on it are `comment(..., on_pull=False)`."""
        with self.lock:
            return next(self.repos[full_name].numbers)

    def comment(
        self,
        full: str,
        number: int,
        body: str,
        *,
        user: str = "octocat",
        on_pull: bool = True,
        user_type: str = "User",
    ) -> Json:
        """`user` types a comment on github.com: stored, and its `issue_comment.created`
        delivered; returns that payload."""
        payload = self.issue_comment_payload(
            full, number, body, user=user, user_type=user_type, on_pull=on_pull
        )
        self.deliver("issue_comment", payload)
        return payload

    def reply_to_review_comment(
        self,
        full: str,
        number: int,
        comment_id: int,
        body: str,
        user: str = "octocat",
        *,
        user_type: str = "User",
    ) -> Json:
        """`user` answers review comment `comment_id` of pull request `number` on github.com:
        the reply is stored (`in_reply_to_id` the thread's first comment, as GitHub sets it,
        on the same `path` and lines) and its `pull_request_review_comment.created`
        delivered; returns that payload."""
        repo, pull = self.repos[full], self.pulls[(full, number)]
        with self.lock:
            target = next(
                (c for c in self.review_comments if c["id"] == comment_id and _on(c, pull)), None
            )
            if target is None:
                raise ValueError(f"no review comment {comment_id} on {full}#{number}")
            reply = self._reply(repo, pull, target, body, user, user_type)
            payload = self._review_comment_created(repo, pull, reply)
            self.deliver("pull_request_review_comment", payload)
        return payload

    def deliver(
        self, event: str, payload: Json, *, guid: str | None = None, redelivery: bool = False
    ) -> str:
        """Send `payload` to `hook_url` as GitHub sends the App's `event` webhook, from any
        thread: signed with `hook_secret`, in the background (never before the API answer that
        caused it), one at a time in order, once (a failed attempt is listed in the hook's
        deliveries, never retried). Returns the delivery's guid (`X-GitHub-Delivery`); nothing
        is sent when `hook_url` is None."""
        guid = guid or str(uuid.uuid4())
        url = self.hook_url
        if url is None:
            return guid
        loop, outbox = self._loop, self._outbox
        if loop is None or outbox is None:
            raise RuntimeError("the fake GitHub is not serving")
        body = json.dumps(payload).encode()
        item = Outgoing(guid, event, json.loads(body), body, url, self.hook_secret, redelivery)
        loop.call_soon_threadsafe(outbox.put_nowait, item)
        return guid

    def add_delivery(
        self,
        guid: str,
        event: str,
        *,
        action: str | None = None,
        status_code: int = 200,
        delivered_at: datetime | None = None,
        redelivery: bool = False,
        full_name: str | None = None,
        payload: Json | None = None,
    ) -> int:
        """A delivery of the App's webhook as GitHub lists it; returns its id."""
        repo = self.repos.get(full_name) if full_name else None
        installation = (
            repo.installation_id if repo else next(iter(self.installations.values()), None)
        )
        delivery_id = next(self._ids) + 90_000_000_000
        record = objects.delivery(
            delivery_id,
            guid,
            event,
            action,
            status_code=status_code,
            delivered_at=delivered_at or datetime.now(UTC),
            redelivery=redelivery,
            installation_id=installation,
            repository_id=repo.id if repo else None,
        )
        record["_payload"] = payload or {}
        self.deliveries.append(record)
        return delivery_id

    # --- webhook payloads ------------------------------------------------------------

    def pull_request_payload(
        self,
        full: str,
        number: int,
        action: str,
        *,
        sender: str = "octocat",
        before: str | None = None,
    ) -> Json:
        """The `pull_request.<action>` delivery for this pull request as it is now."""
        repo, pull = self.repos[full], self.pulls[(full, number)]
        try:
            payload = example("pull_request", action)
        except LookupError:
            payload = example("pull_request", "opened")
            payload["action"] = action
        payload = objects.relink(payload, self.base_url, full)
        payload.update(
            number=number, pull_request=self._pull_json(repo, pull), **self._context(repo, sender)
        )
        if action == "synchronize":
            payload["before"] = before or repo.git.resolve(f"{pull.head_sha}^")
            payload["after"] = pull.head_sha
        return payload

    def issue_comment_payload(
        self,
        full: str,
        number: int,
        body: str,
        *,
        user: str = "octocat",
        user_type: str = "User",
        on_pull: bool = True,
    ) -> Json:
        """`issue_comment.created`, the comment stored first so it can be reacted to."""
        repo = self.repos[full]
        comment = self._issue_comment(repo, number, body, user, user_type)
        return self._comment_created(repo, number, comment, on_pull=on_pull)

    def _comment_created(self, repo: Repo, number: int, comment: Json, *, on_pull: bool) -> Json:
        """`issue_comment.created` for a stored comment, sent by its author."""
        full = repo.full_name
        user, user_type = comment["user"]["login"], comment["user"]["type"]
        payload: Json = objects.relink(example("issue_comment", "created"), self.base_url, full)
        pull = self.pulls.get((full, number))
        api, html = f"{self.base_url}/repos/{full}", f"{self.base_url}/{full}"
        issue = payload["issue"]
        issue.update(
            number=number,
            id=pull.id if pull else next(self._ids),
            title=pull.title if pull else "An issue",
            body=pull.body if pull else "",
            user=self._user(pull.user if pull else user),
            state=pull.state if pull else "open",
            url=f"{api}/issues/{number}",
            comments_url=f"{api}/issues/{number}/comments",
            events_url=f"{api}/issues/{number}/events",
            labels_url=f"{api}/issues/{number}/labels{{/name}}",
            labels=[],
            assignee=None,
            assignees=[],
            milestone=None,
            html_url=f"{html}/{'pull' if on_pull else 'issues'}/{number}",
        )
        issue.pop("pull_request", None)
        if on_pull:
            pull_html = f"{html}/pull/{number}"
            issue["pull_request"] = {
                "url": f"{api}/pulls/{number}",
                "html_url": pull_html,
                "diff_url": f"{pull_html}.diff",
                "patch_url": f"{pull_html}.patch",
                "merged_at": pull.merged_at if pull else None,
            }
        payload.update(comment=_public(comment), **self._context(repo, user, user_type))
        return payload

    def review_comment_payload(
        self,
        full: str,
        number: int,
        body: str,
        *,
        path: str,
        line: int,
        user: str = "octocat",
        user_type: str = "User",
    ) -> Json:
        """`pull_request_review_comment.created` on `line` (new side) of `path`, stored."""
        repo, pull = self.repos[full], self.pulls[(full, number)]
        files = {c.filename: c for c in self._files(repo, pull)}
        try:
            placed = _place(files, {"path": path, "line": line, "body": body}, pull.head_sha)
        except Unprocessable as exc:
            raise ValueError(f"{path}:{line} is not in the diff: {exc.errors}") from None
        stored = self._review(repo, pull, "", "COMMENTED", pull.head_sha, [placed], user, user_type)
        return self._review_comment_created(repo, pull, stored["comments"][0])

    def _review_comment_created(self, repo: Repo, pull: Pull, comment: Json) -> Json:
        """`pull_request_review_comment.created` for a stored comment, sent by its author."""
        payload = example("pull_request_review_comment", "created")
        payload = objects.relink(payload, self.base_url, repo.full_name)
        user, user_type = comment["user"]["login"], comment["user"]["type"]
        payload.update(
            comment=_public(comment),
            pull_request=self._pull_json(repo, pull),
            **self._context(repo, user, user_type),
        )
        return payload

    def push_payload(
        self,
        full: str,
        branch: str,
        before: str,
        after: str,
        *,
        sender: str = "octocat",
        seen: list[str] | None = None,
    ) -> Json:
        """The `push` delivery of `branch` moving from `before` to `after` (`ZERO_SHA`: created
        or deleted), as GitHub writes it: `ref`, `before`, `after`, `created`, `deleted`,
        `forced`, `base_ref` (null), `compare`, `commits` (oldest first, the newest
        `PUSH_COMMITS` of them, each with its `added`, `removed` and `modified` paths against
        its first parent), `head_commit` (null when deleted), `pusher`, and the repository
        with `default_branch` and `master_branch`. The commits are `before..after`, or those
        new to the repository for a new branch; `distinct` tells a commit no branch had yet.
        `seen` are the branch tips before the push (default: `before`)."""
        repo = self.repos[full]
        git, html = repo.git, f"{self.base_url}/{full}"
        created, deleted = before == ZERO_SHA, after == ZERO_SHA
        known = [sha for sha in (seen if seen is not None else [before]) if sha != ZERO_SHA]
        commits: list[Json] = []
        head: Json | None = None
        if not deleted:
            fresh = git.commits(after, "--not", *known)  # what no branch had yet
            new = {c.sha for c in fresh}
            pushed = fresh if created else git.commits(f"{before}..{after}")
            commits = [self._push_commit(repo, c, c.sha in new) for c in pushed[-PUSH_COMMITS:]]
            head = self._push_commit(repo, git.commits("-1", after)[0], after in new)
        forced = (
            not (created or deleted)
            and git.attempt("merge-base", "--is-ancestor", before, after)[0] != 0
        )
        if created:
            compare = f"{html}/compare/{branch}"
        else:
            compare = f"{html}/compare/{before[:12]}...{after[:12]}"
        user = self._user(sender)
        context = self._context(repo, sender)
        context["repository"] = objects.push_repository(self.base_url, repo)
        return {
            "ref": f"refs/heads/{branch}",
            "before": before,
            "after": after,
            "created": created,
            "deleted": deleted,
            "forced": forced,
            "base_ref": None,
            "compare": compare,
            "commits": commits,
            "head_commit": head,
            "pusher": {
                "name": sender,
                "email": f"{user['id']}+{sender}@users.noreply.github.com",
            },
            **context,
        }

    def _push_commit(self, repo: Repo, info: CommitInfo, distinct: bool) -> Json:
        parent = info.parents[:1] or ["--root"]
        out = repo.git.run(
            "diff-tree", "-r", "--no-renames", "--no-commit-id", "--name-status", "-z",
            *parent, info.sha,
        )  # fmt: skip
        fields = out.decode().split("\0")
        paths: dict[str, list[str]] = {"A": [], "D": [], "M": []}
        for status, path in zip(fields[0::2], fields[1::2], strict=False):
            if status:
                paths.get(status[0], paths["M"]).append(path)
        return objects.push_commit(
            self.base_url,
            repo.full_name,
            info,
            added=paths["A"],
            removed=paths["D"],
            modified=paths["M"],
            distinct=distinct,
        )

    def _pull_event(
        self, pull: Pull, action: str, sender: str, *, before: str | None = None
    ) -> None:
        """Deliver `pull_request.<action>` for the pull request as it is now."""
        if self.hook_url is not None:
            payload = self.pull_request_payload(
                pull.full_name, pull.number, action, sender=sender, before=before
            )
            self.deliver("pull_request", payload)

    def _context(self, repo: Repo, sender: str, kind: str = "User") -> Json:
        installation = {
            "id": repo.installation_id,
            "node_id": objects.node_id("Installation", repo.installation_id),
        }
        return {
            "repository": objects.repository(self.base_url, repo),
            "installation": installation,
            "sender": self._user(sender, kind),
        }

    # === authentication, as GitHub does it ===============================================

    def _jwt(self, request: web.Request) -> None:
        token = _bearer(request)
        try:
            claims = jwt.decode(
                token, self.public_key, algorithms=["RS256"], options={"require": ["iat", "exp"]}
            )
        except jwt.PyJWTError as exc:
            raise _error(401, f"A JSON web token could not be decoded ({exc})") from None
        if str(claims.get("iss")) != str(self.app_id):
            raise _error(401, "'Issuer' claim ('iss') must be an Integer")
        if claims["exp"] - claims["iat"] > 660:
            raise _error(401, "'Expiration time' claim ('exp') is too far in the future")

    def _token(self, token: str) -> int | None:
        found = self.tokens.get(token)
        return found[0] if found is not None and found[1] >= time.time() else None

    def _installation(self, request: web.Request) -> int:
        header = request.headers.get("Authorization", "")
        installation_id = self._token(header.split(" ", 1)[1] if " " in header else "")
        if installation_id is None:
            raise _error(401, "Bad credentials")
        return installation_id

    def _record(self, request: web.Request, auth: str) -> None:
        self.calls.append(Call(request.method, request.path, auth, time.monotonic()))
        for fragment, queued in self.failures.items():
            method, _, path = fragment.rpartition(" ")  # "POST /x": only that method's calls
            if path in request.path and method in ("", request.method) and queued:
                status, headers = queued.pop(0)
                message = "You have exceeded a secondary rate limit." if status == 403 else "Bad"
                raise _error(status, message, headers=headers)

    def _repo(self, request: web.Request) -> Repo:
        """The repository of the path, for an installation token of its installation."""
        installation_id = self._installation(request)
        self._record(request, f"installation:{installation_id}")
        full = f"{request.match_info['owner']}/{request.match_info['repo']}"
        repo = self.repos.get(full)
        if repo is None or repo.installation_id != installation_id:
            raise _error(404, "Not Found")
        return repo

    def _pull(self, repo: Repo, request: web.Request) -> Pull:
        pull = self.pulls.get((repo.full_name, int(request.match_info["number"])))
        if pull is None:
            raise _error(404, "Not Found")
        return pull

    def _user(self, login: str, kind: str = "User") -> Json:
        return objects.user(self.base_url, login, kind)

    # === state ===========================================================================

    def _sync_heads(self, repo: Repo, sender: str | None) -> None:
        """After a push by `sender`: each branch that moved is delivered as a `push`, then
        open pull requests follow their branches, and those whose head moved are delivered
        as `pull_request.synchronize` (None: nothing delivered)."""
        with self.lock:
            seen, repo.tips = repo.tips, _tips(repo.git)
            if sender is not None and self.hook_url is not None:
                for branch in sorted(seen.keys() | repo.tips.keys()):
                    old, new = seen.get(branch, ZERO_SHA), repo.tips.get(branch, ZERO_SHA)
                    if old != new:
                        payload = self.push_payload(
                            repo.full_name, branch, old, new, sender=sender,
                            seen=list(seen.values()),
                        )  # fmt: skip
                        self.deliver("push", payload)
            for pull in self.pulls.values():
                if pull.full_name != repo.full_name or pull.state != "open":
                    continue
                head, base = repo.git.branch(pull.head), repo.git.branch(pull.base)
                before = pull.head_sha
                if head and head != pull.head_sha:
                    pull.head_sha, pull.updated_at = head, now()
                if base:
                    pull.base_sha = base
                if sender is not None and pull.head_sha != before:
                    self._pull_event(pull, "synchronize", sender, before=before)

    def _open(
        self, repo: Repo, head: str, base: str, title: str, body: str, user: str, draft: bool
    ) -> Pull:
        head = head.split(":", 1)[-1]
        head_sha, base_sha = repo.git.branch(head), repo.git.branch(base)
        if head_sha is None:
            raise Unprocessable([{"resource": "PullRequest", "field": "head", "code": "invalid"}])
        if base_sha is None:
            raise Unprocessable([{"resource": "PullRequest", "field": "base", "code": "invalid"}])
        label = f"{repo.owner}:{head}"
        for pull in self.pulls.values():
            same = (pull.full_name, pull.head, pull.base) == (repo.full_name, head, base)
            if same and pull.state == "open":
                raise Unprocessable([_custom(f"A pull request already exists for {label}.")])
        if repo.git.count(f"{base_sha}..{head_sha}") == 0:
            raise Unprocessable([_custom(f"No commits between {base} and {head}")])
        number = next(repo.numbers)
        pull = Pull(
            repo.full_name,
            number,
            next(self._ids) + 2_000_000,
            head,
            base,
            head_sha,
            base_sha,
            title,
            body,
            user,
            draft,
        )
        self.pulls[(repo.full_name, number)] = pull
        return pull

    def _files(self, repo: Repo, pull: Pull, commit: str | None = None) -> list[FileChange]:
        head = commit or pull.head_sha
        start = repo.git.merge_base(pull.base_sha, head) or pull.base_sha
        return repo.git.diff(start, head)

    def _pull_json(self, repo: Repo, pull: Pull) -> Json:
        files = self._files(repo, pull)
        start = repo.git.merge_base(pull.base_sha, pull.head_sha) or pull.base_sha
        commits = repo.git.count(f"{start}..{pull.head_sha}")
        stats = (
            commits,
            sum(f.additions for f in files),
            sum(f.deletions for f in files),
            len(files),
        )
        mergeable = None
        if pull.state == "open":
            tip = repo.git.branch(pull.base) or pull.base_sha
            mergeable = repo.git.merge_tree(tip, pull.head_sha) is not None
        repo_json = objects.repository(self.base_url, repo)
        return objects.pull_request(
            self.base_url, repo_json, pull, stats=stats, mergeable=mergeable
        )

    def _review(
        self,
        repo: Repo,
        pull: Pull,
        body: str,
        state: str,
        commit_id: str,
        placed: list[Json],
        login: str = BOT_LOGIN,
        kind: str = "User",
    ) -> Json:
        """Store a review and its comments (each `placed` by `_place`)."""
        full, review_id = repo.full_name, next(self._ids)
        record = objects.review(
            self.base_url,
            full,
            pull.number,
            review_id,
            user=self._user(login, kind),
            body=body,
            state=state,
            commit_id=commit_id,
            author_association=self._association(full, login),
        )
        if state == "PENDING":
            record["submitted_at"] = None
        record.update(_repo=full, _number=pull.number, comments=[])
        for fields in placed:
            comment = objects.review_comment(
                self.base_url,
                full,
                pull.number,
                next(self._ids),
                pull_request_review_id=review_id,
                user=self._user(login, kind),
                author_association=self._association(full, login),
                **fields,
            )
            comment.update(_repo=full, _number=pull.number)
            record["comments"].append(comment)
            self.review_comments.append(comment)
        self.reviews.append(record)
        return record

    def _issue_comment(
        self, repo: Repo, number: int, body: str, login: str = BOT_LOGIN, kind: str = "User"
    ) -> Json:
        comment = objects.issue_comment(
            self.base_url,
            repo.full_name,
            number,
            next(self._ids),
            body=body,
            user=self._user(login, kind),
            author_association=self._association(repo.full_name, login),
        )
        comment.update(_repo=repo.full_name, _number=number)
        self.issue_comments.append(comment)
        return comment

    def _association(self, full: str, login: str) -> str:
        if login == full.split("/")[0]:
            return "OWNER"
        return "COLLABORATOR" if (full, login) in self.permissions else "NONE"

    def _page(
        self, request: web.Request, items: list[Any], *, default: int = 30
    ) -> tuple[list[Any], dict[str, str]]:
        """A page of `items` (?per_page, at most 100; ?page) and its `Link` header."""
        per_page = max(1, min(_int(request, "per_page", default), 100))
        page = max(1, _int(request, "page", 1))
        last = max(1, math.ceil(len(items) / per_page))

        def link(number: int, rel: str) -> str:
            query = {**request.query, "page": str(number)}
            return f'<{self.base_url}{request.path}?{urlencode(query)}>; rel="{rel}"'

        links = []
        if page > 1:
            links.append(link(page - 1, "prev"))
        if page < last:
            links += [link(page + 1, "next"), link(last, "last")]
        if page > 1:
            links.append(link(1, "first"))
        chunk = items[(page - 1) * per_page : page * per_page]
        return chunk, ({"Link": ", ".join(links)} if links else {})

    # === App (JWT) endpoints =============================================================

    async def app(self, request: web.Request) -> web.Response:
        self._jwt(request)
        self._record(request, "jwt")
        return web.json_response(
            {"id": self.app_id, "slug": "persais", "name": "Persais",
             "owner": self._user("persais-owner")}
        )  # fmt: skip

    async def access_token(self, request: web.Request) -> web.Response:
        self._jwt(request)
        self._record(request, "jwt")
        installation_id = int(request.match_info["id"])
        if installation_id not in self.installations.values():
            raise _error(404, "Not Found")
        token = "ghs_" + secrets.token_urlsafe(27)
        expires = datetime.now(UTC) + timedelta(hours=1)
        self.tokens[token] = (installation_id, expires.timestamp())
        return web.json_response(
            {
                "token": token,
                "expires_at": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "permissions": {"contents": "write", "pull_requests": "write"},
                "repository_selection": "all",
            },
            status=201,
        )

    async def list_installations(self, request: web.Request) -> web.Response:
        """`GET /app/installations`: one per installation id, on its first repository's owner."""
        self._jwt(request)
        self._record(request, "jwt")
        owners: dict[int, str] = {}
        for full, installation_id in self.installations.items():
            owners.setdefault(installation_id, full.split("/")[0])
        return web.json_response([
            {"id": i, "app_id": self.app_id, "app_slug": "persais",
             "account": self._user(owner), "repository_selection": "selected"}
            for i, owner in owners.items()
        ])  # fmt: skip

    async def repo_installation(self, request: web.Request) -> web.Response:
        self._jwt(request)
        self._record(request, "jwt")
        full = f"{request.match_info['owner']}/{request.match_info['repo']}"
        if full not in self.installations:
            raise _error(404, "Not Found")
        # The webhook's installation object, completed with what the REST answer adds.
        installation = example("installation", "created")["installation"]
        installation.update(id=self.installations[full], app_id=self.app_id, app_slug="persais")
        for nullable in ("single_file_name", "suspended_by", "suspended_at"):
            installation.setdefault(nullable, None)
        return web.json_response(installation)

    async def hook_deliveries(self, request: web.Request) -> web.Response:
        """Newest first; `?cursor=` continues where the `Link: rel="next"` points."""
        self._jwt(request)
        self._record(request, "jwt")
        per_page = max(1, min(_int(request, "per_page", 30), 100))
        ordered = sorted(self.deliveries, key=lambda d: (d["delivered_at"], d["id"]), reverse=True)
        start = 0
        if cursor := request.query.get("cursor"):
            ids = [str(d["id"]) for d in ordered]
            wanted = cursor.removeprefix("v1_")
            start = ids.index(wanted) if wanted in ids else len(ids)
        chunk = ordered[start : start + per_page]
        headers = {}
        if start + per_page < len(ordered):
            query = urlencode(
                {"cursor": f"v1_{ordered[start + per_page]['id']}", "per_page": per_page}
            )
            headers["Link"] = f'<{self.base_url}{request.path}?{query}>; rel="next"'
        return web.json_response([_public(d) for d in chunk], headers=headers)

    def _delivery(self, request: web.Request) -> Json:
        self._jwt(request)
        self._record(request, "jwt")
        wanted = int(request.match_info["delivery_id"])
        found = next((d for d in self.deliveries if d["id"] == wanted), None)
        if found is None:
            raise _error(404, "Not Found")
        return found

    async def hook_delivery(self, request: web.Request) -> web.Response:
        found = self._delivery(request)
        headers = {"X-GitHub-Event": found["event"], "X-GitHub-Delivery": found["guid"]}
        hook = found.get("_hook") or {}
        detail = {
            **_public(found),
            "url": hook.get("url", f"{self.base_url}/webhooks/github"),
            "request": {"headers": hook.get("headers", headers), "payload": found["_payload"]},
            "response": hook.get("response", {"headers": {}, "payload": None}),
        }
        return web.json_response(detail)

    async def redeliver(self, request: web.Request) -> web.Response:
        """Asks for the delivery again: sent again (same guid, `redelivery`) to the hook."""
        found = self._delivery(request)
        self.redelivered.append(found["id"])
        self.deliver(found["event"], found["_payload"], guid=found["guid"], redelivery=True)
        return web.json_response({}, status=202)

    # --- sending webhooks -----------------------------------------------------------------

    async def _start_hooks(self, _app: web.Application) -> None:
        self._loop = asyncio.get_running_loop()
        self._outbox = asyncio.Queue()
        self._sender = asyncio.create_task(self._send_hooks(self._outbox), name="webhooks")

    async def _stop_hooks(self, _app: web.Application) -> None:
        """Send what is queued (for a few seconds at most), then stop."""
        loop, outbox, sender = self._loop, self._outbox, self._sender
        if loop is None or outbox is None or sender is None:
            return
        loop.call_soon(outbox.put_nowait, None)  # after what other threads queued already
        try:
            await asyncio.wait_for(asyncio.shield(sender), 5)
        except TimeoutError:
            sender.cancel()
            with suppress(asyncio.CancelledError):
                await sender
        self._loop = self._outbox = self._sender = None

    async def _send_hooks(self, outbox: asyncio.Queue[Outgoing | None]) -> None:
        timeout = aiohttp.ClientTimeout(total=HOOK_TIMEOUT)
        connector = aiohttp.TCPConnector(force_close=True)  # a connection per delivery
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            while (item := await outbox.get()) is not None:
                await self._send_hook(session, item)

    async def _send_hook(self, session: aiohttp.ClientSession, item: Outgoing) -> None:
        """POST one delivery, once, and list it with GitHub's verdict."""
        headers = github_headers(item.event, item.body, delivery=item.guid, secret=item.secret)
        sha1 = hmac.new(item.secret.encode(), item.body, hashlib.sha1).hexdigest()
        headers.update(
            {
                "X-Hub-Signature": f"sha1={sha1}",
                "X-GitHub-Hook-Installation-Target-Type": "integration",
                "X-GitHub-Hook-Installation-Target-ID": str(self.app_id),
            }
        )
        started = time.monotonic()
        status: str | None = None
        response: Json = {"headers": {}, "payload": None}
        try:
            async with session.post(item.url, data=item.body, headers=headers) as answer:
                text = await answer.text(errors="replace")
                status_code = answer.status
                response = {"headers": dict(answer.headers), "payload": text or None}
        except TimeoutError:
            status_code, status = 0, "timed out"
        except aiohttp.ClientConnectionError:
            status_code, status = 0, "failed to connect to host"
        except aiohttp.ClientError as exc:
            status_code, status = 0, f"Invalid HTTP Response: {type(exc).__name__}"
        repository = item.payload.get("repository") or {}
        with self.lock:
            delivery_id = self.add_delivery(
                item.guid,
                item.event,
                action=item.payload.get("action"),
                status_code=status_code,
                redelivery=item.redelivery,
                full_name=repository.get("full_name"),
                payload=item.payload,
            )
            record = next(d for d in reversed(self.deliveries) if d["id"] == delivery_id)
            record["duration"] = round(time.monotonic() - started, 3)
            record["_hook"] = {"url": item.url, "headers": headers, "response": response}
            if status is not None:
                record["status"] = status

    # === repositories and pull requests ==================================================

    async def get_repo(self, request: web.Request) -> web.Response:
        return web.json_response(objects.repository(self.base_url, self._repo(request)))

    async def list_pulls(self, request: web.Request) -> web.Response:
        repo = self._repo(request)
        state = request.query.get("state", "open")
        head = request.query.get("head")
        base = request.query.get("base")
        found = []
        for pull in sorted(self.pulls.values(), key=lambda p: -p.number):
            if pull.full_name != repo.full_name or state not in ("all", pull.state):
                continue
            if head and head.split(":", 1)[-1] != pull.head:
                continue
            if head and ":" in head and head.split(":", 1)[0] != repo.owner:
                continue
            if base and base != pull.base:
                continue
            found.append(pull)
        chunk, headers = self._page(request, found)
        return web.json_response([self._pull_json(repo, p) for p in chunk], headers=headers)

    async def create_pull(self, request: web.Request) -> web.Response:
        repo = self._repo(request)
        data = await _body(request)
        for name in ("head", "base", "title"):
            if not data.get(name):
                raise _unprocessable(
                    [{"resource": "PullRequest", "field": name, "code": "missing_field"}]
                )
        try:
            with self.lock:
                pull = self._open(
                    repo,
                    data["head"],
                    data["base"],
                    data["title"],
                    data.get("body") or "",
                    BOT_LOGIN,
                    bool(data.get("draft")),
                )
                self._pull_event(pull, "opened", BOT_LOGIN)
        except Unprocessable as exc:
            raise _unprocessable(exc.errors, exc.message) from None
        answer = self._pull_json(repo, pull)
        return web.json_response(answer, status=201, headers={"Location": answer["url"]})

    async def get_pull(self, request: web.Request) -> web.Response:
        repo = self._repo(request)
        return web.json_response(self._pull_json(repo, self._pull(repo, request)))

    async def update_pull(self, request: web.Request) -> web.Response:
        repo = self._repo(request)
        pull = self._pull(repo, request)
        data = await _body(request)
        state = data.get("state")
        if state not in (None, "open", "closed"):
            raise _unprocessable([{"resource": "PullRequest", "field": "state", "code": "invalid"}])
        if state == "open" and pull.merged:
            raise _unprocessable(
                [
                    _custom(
                        "state cannot be changed. The pull request cannot be "
                        "reopened because it has been merged."
                    )
                ]
            )
        with self.lock:
            action = None
            if state == "closed" and pull.state == "open":
                pull.state, pull.closed_at, action = "closed", now(), "closed"
            elif state == "open" and pull.state == "closed":
                pull.state, pull.closed_at, action = "open", None, "reopened"
                self._sync_heads(repo, None)  # the reopened pull request shows where it is
            pull.title = data.get("title", pull.title)
            pull.body = data.get("body", pull.body) or ""
            pull.base = data.get("base", pull.base)
            pull.updated_at = now()
            if action is not None:
                self._pull_event(pull, action, BOT_LOGIN)
        return web.json_response(self._pull_json(repo, pull))

    async def pull_files(self, request: web.Request) -> web.Response:
        repo = self._repo(request)
        pull = self._pull(repo, request)
        entries = [
            objects.diff_entry(self.base_url, repo.full_name, pull.head_sha, change)
            for change in self._files(repo, pull)[:MAX_FILES]
        ]
        chunk, headers = self._page(request, entries)
        return web.json_response(chunk, headers=headers)

    async def compare(self, request: web.Request) -> web.Response:
        repo = self._repo(request)
        base_ref, _, head_ref = request.match_info["basehead"].partition("...")
        base, head = repo.git.resolve(base_ref), repo.git.resolve(head_ref)
        if base is None or head is None:
            raise _error(404, "Not Found")
        start = repo.git.merge_base(base, head)
        if start is None:
            raise _error(404, f"No common ancestor between {base_ref} and {head_ref}.")
        ahead, behind = repo.git.count(f"{start}..{head}"), repo.git.count(f"{start}..{base}")
        status = (
            "identical"
            if ahead == behind == 0
            else "ahead"
            if behind == 0
            else "behind"
            if ahead == 0
            else "diverged"
        )
        full, url = repo.full_name, self.base_url
        commits = [objects.commit(url, full, c) for c in repo.git.commits(f"{start}..{head}")]
        html = f"{url}/{full}/compare/{base_ref}...{head_ref}"
        return web.json_response(
            {
                "url": f"{url}/repos/{full}/compare/{base_ref}...{head_ref}",
                "html_url": html,
                "permalink_url": f"{url}/{full}/compare/{base}...{head}",
                "diff_url": f"{html}.diff",
                "patch_url": f"{html}.patch",
                "base_commit": self._commit(repo, base),
                "merge_base_commit": self._commit(repo, start),
                "status": status,
                "ahead_by": ahead,
                "behind_by": behind,
                "total_commits": ahead,
                "commits": commits[-250:],
                "files": [
                    objects.diff_entry(url, full, head, c)
                    for c in repo.git.diff(start, head)[:MAX_FILES]
                ],
            }
        )

    def _commit(self, repo: Repo, sha: str) -> Json:
        return objects.commit(self.base_url, repo.full_name, repo.git.commits("-1", sha)[0])

    async def merge_pull(self, request: web.Request) -> web.Response:
        repo = self._repo(request)
        pull = self._pull(repo, request)
        data = await _body(request) if request.can_read_body else {}
        method = data.get("merge_method", "merge")
        if method not in ("merge", "squash", "rebase"):
            raise _unprocessable(
                [{"resource": "PullRequest", "field": "merge_method", "code": "invalid"}]
            )
        with self.lock:
            if pull.state != "open":
                raise _error(405, "Pull Request is not mergeable")
            if pull.draft:
                raise _error(405, "Pull Request is still a draft")
            if data.get("sha") and data["sha"] != pull.head_sha:
                raise _error(409, "Head branch was modified. Review and try the merge again.")
            sha = self._merge(
                repo, pull, method, data.get("commit_title"), data.get("commit_message")
            )
            if sha is None:
                raise _error(405, "Pull Request is not mergeable")
        message = "Pull Request successfully merged"
        return web.json_response({"sha": sha, "merged": True, "message": message})

    def _merge(
        self, repo: Repo, pull: Pull, method: str, title: str | None, message: str | None
    ) -> str | None:
        """Merge in the bare repository; the new base sha, or None on a conflict."""
        git, tip = repo.git, repo.git.branch(pull.base)
        assert tip is not None
        start = git.merge_base(tip, pull.head_sha) or tip
        if method == "rebase":
            sha = git.rebase(tip, start, pull.head_sha)
        else:
            tree = git.merge_tree(tip, pull.head_sha)
            if tree is None:
                return None
            if method == "squash":
                subjects = [f"* {c.message}" for c in git.commits(f"{start}..{pull.head_sha}")]
                text = f"{title or f'{pull.title} (#{pull.number})'}\n\n"
                text += message if message is not None else "\n\n".join(subjects)
                sha = git.commit_tree(tree, [tip], text)
            else:
                default = f"Merge pull request #{pull.number} from {repo.owner}/{pull.head}"
                text = f"{title or default}\n\n{message if message is not None else pull.title}"
                sha = git.commit_tree(tree, [tip, pull.head_sha], text)
        if sha is None:
            return None
        git.update_ref(pull.base, sha, tip)
        pull.base_sha = tip  # the merged pull request keeps its diff
        pull.state, pull.merged, pull.merge_commit_sha = "closed", True, sha
        pull.merged_at = pull.closed_at = pull.updated_at = now()
        self.merges.append(
            {
                "full_name": repo.full_name,
                "number": pull.number,
                "method": method,
                "sha": sha,
                "head_sha": pull.head_sha,
            }
        )
        self._pull_event(pull, "closed", BOT_LOGIN)
        self._sync_heads(repo, BOT_LOGIN)
        return sha

    async def contents(self, request: web.Request) -> web.Response:
        repo = self._repo(request)
        path = request.match_info["path"].strip("/")
        ref = request.query.get("ref") or repo.default_branch
        commit = repo.git.resolve(ref)
        if commit is None:
            raise _error(404, f"No commit found for the ref {ref}")
        blob = repo.git.blob(commit, path) if path else None
        if blob is not None:
            sha, data = blob
            return web.json_response(
                objects.content_file(self.base_url, repo.full_name, ref, path, sha, data)
            )
        entries = repo.git.tree(commit, path)
        if entries is None:
            raise _error(404, "Not Found")
        listing = []
        for _, kind, sha, size, name in entries:
            item = objects.content_file(
                self.base_url, repo.full_name, ref, f"{path}/{name}".strip("/"), sha, b""
            )
            for key in ("content", "encoding"):
                item.pop(key)
            item.update(type="dir" if kind == "tree" else "file", size=size)
            if kind == "tree":
                item["download_url"] = None
            listing.append(item)
        return web.json_response(listing)

    async def delete_ref(self, request: web.Request) -> web.Response:
        repo = self._repo(request)
        ref = request.match_info["ref"]
        with self.lock:
            if not ref.startswith("heads/") or not repo.git.delete_branch(ref[len("heads/") :]):
                raise _error(422, "Reference does not exist")
            for pull in self.pulls.values():  # GitHub closes pull requests from it
                if (pull.full_name, pull.head, pull.state) == (repo.full_name, ref[6:], "open"):
                    pull.state, pull.closed_at = "closed", now()
                    self._pull_event(pull, "closed", BOT_LOGIN)
            self._sync_heads(repo, BOT_LOGIN)  # the branch's `push`, `deleted`
        return web.Response(status=204)

    # === reviews and comments ============================================================

    async def create_review(self, request: web.Request) -> web.Response:
        repo = self._repo(request)
        pull = self._pull(repo, request)
        data = await _body(request)
        event = data.get("event")
        if event not in REVIEW_STATES:
            raise _unprocessable(
                [{"resource": "PullRequestReview", "field": "event", "code": "invalid"}]
            )
        if pull.user == BOT_LOGIN and event in ("APPROVE", "REQUEST_CHANGES"):
            verb = "approve" if event == "APPROVE" else "request changes on"
            raise _unprocessable([f"Can not {verb} your own pull request"], "Unprocessable Entity")
        body, specs = data.get("body") or "", data.get("comments") or []
        if not body and (event == "REQUEST_CHANGES" or (event == "COMMENT" and not specs)):
            raise _unprocessable(["Review body can't be blank"], "Unprocessable Entity")
        commit_id = data.get("commit_id") or pull.head_sha
        if repo.git.resolve(commit_id) is None:
            raise _unprocessable(["Commit could not be resolved"], "Unprocessable Entity")
        files = {c.filename: c for c in self._files(repo, pull, commit_id)}
        try:
            placed = [_place(files, spec, commit_id) for spec in specs]
        except Unprocessable as exc:
            raise _unprocessable(exc.errors, exc.message) from None
        stored = self._review(repo, pull, body, REVIEW_STATES[event], commit_id, placed)
        return web.json_response(_public(stored))

    async def list_reviews(self, request: web.Request) -> web.Response:
        repo = self._repo(request)
        pull = self._pull(repo, request)
        found = [_public(r) for r in self.reviews if _on(r, pull)]
        chunk, headers = self._page(request, found)
        return web.json_response(chunk, headers=headers)

    async def list_review_comments(self, request: web.Request) -> web.Response:
        repo = self._repo(request)
        pull = self._pull(repo, request)
        chunk, headers = self._page(
            request, [_public(c) for c in self.review_comments if _on(c, pull)]
        )
        return web.json_response(chunk, headers=headers)

    async def reply(self, request: web.Request) -> web.Response:
        repo = self._repo(request)
        pull = self._pull(repo, request)
        wanted = int(request.match_info["comment_id"])
        target = next((c for c in self.review_comments if c["id"] == wanted and _on(c, pull)), None)
        if target is None:
            raise _error(404, "Not Found")
        body = (await _body(request)).get("body")
        if not body:
            raise _unprocessable(
                [{"resource": "PullRequestReviewComment", "field": "body", "code": "missing_field"}]
            )
        with self.lock:
            stored = self._reply(repo, pull, target, body)
        return web.json_response(_public(stored), status=201)

    async def get_review_comment(self, request: web.Request) -> web.Response:
        repo = self._repo(request)
        return web.json_response(_public(self._stored(self.review_comments, repo, request)))

    def _reply(
        self,
        repo: Repo,
        pull: Pull,
        target: Json,
        body: str,
        login: str = BOT_LOGIN,
        kind: str = "User",
    ) -> Json:
        """Store a reply to review comment `target` (a review of its own, as on GitHub): on
        the same lines, `in_reply_to_id` the thread's first comment."""
        copied = (
            "path",
            "line",
            "side",
            "start_line",
            "start_side",
            "original_line",
            "original_start_line",
            "position",
            "original_position",
            "diff_hunk",
            "commit_id",
            "original_commit_id",
        )
        fields = {key: target.get(key) for key in copied}
        fields.update(body=body, in_reply_to_id=target.get("in_reply_to_id") or target["id"])
        stored = self._review(
            repo, pull, "", "COMMENTED", target["commit_id"], [fields], login, kind
        )
        reply: Json = stored["comments"][0]
        return reply

    async def list_issue_comments(self, request: web.Request) -> web.Response:
        repo = self._repo(request)
        number = int(request.match_info["number"])
        found = [
            _public(c)
            for c in self.issue_comments
            if (c["_repo"], c["_number"]) == (repo.full_name, number)
        ]
        chunk, headers = self._page(request, found)
        return web.json_response(chunk, headers=headers)

    async def create_issue_comment(self, request: web.Request) -> web.Response:
        repo = self._repo(request)
        body = (await _body(request)).get("body")
        if not body:
            raise _unprocessable(
                [{"resource": "IssueComment", "field": "body", "code": "missing_field"}]
            )
        number = int(request.match_info["number"])
        with self.lock:
            comment = self._issue_comment(repo, number, body)
            if self.hook_url is not None:
                on_pull = (repo.full_name, number) in self.pulls
                created = self._comment_created(repo, number, comment, on_pull=on_pull)
                self.deliver("issue_comment", created)
        return web.json_response(_public(comment), status=201)

    def _stored(self, records: list[Json], repo: Repo, request: web.Request) -> Json:
        wanted = int(request.match_info["comment_id"])
        found = next(
            (c for c in records if c["id"] == wanted and c["_repo"] == repo.full_name), None
        )
        if found is None:
            raise _error(404, "Not Found")
        return found

    async def get_issue_comment(self, request: web.Request) -> web.Response:
        repo = self._repo(request)
        return web.json_response(_public(self._stored(self.issue_comments, repo, request)))

    async def update_issue_comment(self, request: web.Request) -> web.Response:
        repo = self._repo(request)
        comment = self._stored(self.issue_comments, repo, request)
        body = (await _body(request)).get("body")
        if not body:
            raise _unprocessable(
                [{"resource": "IssueComment", "field": "body", "code": "missing_field"}]
            )
        comment.update(body=body, updated_at=now())
        return web.json_response(_public(comment))

    async def issue_comment_reaction(self, request: web.Request) -> web.Response:
        repo = self._repo(request)
        comment = self._stored(self.issue_comments, repo, request)
        return await self._react(request, "issue_comment", comment["id"])

    async def review_comment_reaction(self, request: web.Request) -> web.Response:
        repo = self._repo(request)
        comment = self._stored(self.review_comments, repo, request)
        return await self._react(request, "pull_request_review_comment", comment["id"])

    async def _react(self, request: web.Request, subject: str, comment_id: int) -> web.Response:
        content = (await _body(request)).get("content")
        if content not in REACTIONS:
            raise _unprocessable([{"resource": "Reaction", "field": "content", "code": "invalid"}])
        for existing in self.reactions:
            same = (existing["_subject"], existing["_comment_id"], existing["content"])
            if same == (subject, comment_id, content) and existing["user"]["login"] == BOT_LOGIN:
                return web.json_response(_public(existing), status=200)
        made = objects.reaction(self.base_url, next(self._ids), BOT_LOGIN, content)
        made.update(_subject=subject, _comment_id=comment_id)
        self.reactions.append(made)
        tally(self, subject, comment_id, content)
        return web.json_response(_public(made), status=201)

    # === check runs ======================================================================

    async def create_check_run(self, request: web.Request) -> web.Response:
        repo = self._repo(request)
        data = await _body(request)
        for name in ("name", "head_sha"):
            if not data.get(name):
                raise _unprocessable(
                    [{"resource": "CheckRun", "field": name, "code": "missing_field"}]
                )
        head_sha = repo.git.resolve(data["head_sha"])
        if head_sha is None:
            raise _unprocessable([f"No commit found for SHA: {data['head_sha']}"])
        run_id = next(self._ids)
        run = objects.check_run(
            self.base_url,
            repo.full_name,
            run_id,
            objects.app(self.base_url, self.app_id),
            name=data["name"],
            head_sha=head_sha,
            status="queued",
            started_at=now(),
            pull_requests=[
                objects.pull_reference(self.base_url, repo, p)
                for p in self.pulls.values()
                if p.full_name == repo.full_name and p.head_sha == head_sha
            ],
        )
        run.update(_repo=repo.full_name, _annotations=[])
        run["output"] = objects.check_output(self.base_url, repo.full_name, run_id, {}, 0)
        self._apply_check(run, data)
        self.check_runs.append(run)
        return web.json_response(_public(run), status=201)

    async def update_check_run(self, request: web.Request) -> web.Response:
        repo = self._repo(request)
        wanted = int(request.match_info["run_id"])
        run = next(
            (r for r in self.check_runs if r["id"] == wanted and r["_repo"] == repo.full_name), None
        )
        if run is None:
            raise _error(404, "Not Found")
        self._apply_check(run, await _body(request))
        return web.json_response(_public(run))

    def _apply_check(self, run: Json, data: Json) -> None:
        """Status, conclusion, times and output, as GitHub applies them (422 when completed
        without a conclusion)."""
        status = data.get("status", run["status"])
        conclusion = data.get("conclusion", run["conclusion"])
        if conclusion is not None:
            status = "completed"
        if status == "completed" and conclusion is None:
            raise _unprocessable(
                [{"resource": "CheckRun", "field": "conclusion", "code": "missing_field"}]
            )
        for key in ("name", "details_url", "external_id", "started_at"):
            if key in data:
                run[key] = data[key]
        run.update(status=status, conclusion=conclusion)
        if status == "completed":
            run["completed_at"] = data.get("completed_at") or run["completed_at"] or now()
        if "output" in data:
            output = data["output"] or {}
            run["_annotations"] += output.get("annotations") or []
            merged = {**run["output"], **{k: v for k, v in output.items() if k != "annotations"}}
            run["output"] = objects.check_output(
                self.base_url, run["_repo"], run["id"], merged, len(run["_annotations"])
            )

    async def list_check_runs(self, request: web.Request) -> web.Response:
        repo = self._repo(request)
        sha = repo.git.resolve(request.match_info["ref"])
        if sha is None:
            raise _unprocessable([f"No commit found for SHA: {request.match_info['ref']}"])
        found = [
            r for r in self.check_runs if r["_repo"] == repo.full_name and r["head_sha"] == sha
        ]
        if name := request.query.get("check_name"):
            found = [r for r in found if r["name"] == name]
        if status := request.query.get("status"):
            found = [r for r in found if r["status"] == status]
        if request.query.get("filter", "latest") == "latest":
            latest = {r["name"]: r for r in found}  # the last of each name wins
            found = [r for r in found if latest[r["name"]] is r]
        found.sort(key=lambda r: -r["id"])
        chunk, headers = self._page(request, found)
        answer = {"total_count": len(found), "check_runs": [_public(r) for r in chunk]}
        return web.json_response(answer, headers=headers)

    # === users ===========================================================================

    async def authenticated_user(self, request: web.Request) -> web.Response:
        """`GET /user` with a user access token."""
        login = self.oauth.user_of(request.headers.get("Authorization", ""))
        if login is None:
            raise _error(401, "Bad credentials")
        self._record(request, f"user:{login}")
        return web.json_response({**self._user(login), "name": login.title(), "email": None})

    async def collaborator_permission(self, request: web.Request) -> web.Response:
        full = f"{request.match_info['owner']}/{request.match_info['repo']}"
        asker = self.oauth.user_of(request.headers.get("Authorization", ""))
        if asker is not None:  # a person's user access token, not the App's
            self._record(request, f"user:{asker}")
            if full not in self.installations or (full, asker) not in self.permissions:
                raise _error(404, "Not Found")
            if self._legacy(self.permissions[(full, asker)]) not in ("write", "admin"):
                raise _error(403, "Must have push access to view collaborator permission.")
        else:
            installation_id = self._installation(request)
            self._record(request, f"installation:{installation_id}")
            if self.installations.get(full) != installation_id:
                raise _error(404, "Not Found")
        user = request.match_info["user"]
        role = self.permissions.get((full, user))
        if role is None:
            raise _error(404, f"{user} is not a user")
        legacy = self._legacy(role)
        push = legacy in ("write", "admin")
        flags = {"admin": role == "admin", "push": push, "pull": True}
        collaborator = {**self._user(user), "role_name": role, "permissions": flags}
        return web.json_response({"permission": legacy, "role_name": role, "user": collaborator})

    def _legacy(self, role: str) -> str:
        """The base permission GitHub reports for a role (admin, write or read)."""
        return self.custom_roles.get(role) or {"maintain": "write", "triage": "read"}.get(
            role, role
        )

    # === git over smart HTTP =============================================================

    async def git_http(self, request: web.Request) -> web.Response:
        """`git clone/fetch/push` with Basic `x-access-token:<installation token>`."""
        installation_id = self._basic(request)
        self._record(request, f"installation:{installation_id}")
        full = f"{request.match_info['owner']}/{request.match_info['name'].removesuffix('.git')}"
        repo = self.repos.get(full)
        if repo is None or repo.installation_id != installation_id:
            raise web.HTTPNotFound(text="Repository not found.")
        response = await http_backend(
            request, project_root=self.root, home=self.home, remote_user="x-access-token"
        )
        if request.path.endswith("/git-receive-pack"):
            self._sync_heads(repo, BOT_LOGIN)  # pushed with the App's installation token
        return response

    def _basic(self, request: web.Request) -> int:
        challenge = {"WWW-Authenticate": 'Basic realm="GitHub"'}
        header = request.headers.get("Authorization", "")
        try:
            decoded = base64.b64decode(header.removeprefix("Basic "), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            decoded = ""
        username, _, password = decoded.partition(":")
        installation_id = self._token(password) if username == "x-access-token" else None
        if not header.startswith("Basic ") or installation_id is None:
            raise web.HTTPUnauthorized(text="Invalid username or token.", headers=challenge)
        return installation_id


# === validation of review comments, as GitHub does it ====================================


def _place(files: dict[str, FileChange], spec: Json, commit_id: str) -> Json:
    """The stored fields of a review comment, or Unprocessable when it is not on the diff."""
    change = files.get(spec.get("path") or "")
    if change is None:
        raise Unprocessable(["Path could not be resolved"], "Unprocessable Entity")
    side = spec.get("side") or "RIGHT"
    target = _target(change, spec.get("line"), side, spec.get("position"))
    if target is None or side not in ("LEFT", "RIGHT"):
        raise Unprocessable(["Line could not be resolved"], "Unprocessable Entity")
    line = target.new if side == "RIGHT" else target.old
    start_line, start_side = spec.get("start_line"), None
    if start_line is not None:
        start_side = spec.get("start_side") or side
        start = change.locate(start_line, start_side)
        if start is None:
            raise Unprocessable(["Line could not be resolved"], "Unprocessable Entity")
        if change.hunk_of(start) != change.hunk_of(target):
            raise Unprocessable(
                ["start_line must be part of the same hunk as the line."], "Unprocessable Entity"
            )
        if start.position > target.position:
            raise Unprocessable(["start_line must precede the end line."], "Unprocessable Entity")
    return {
        "path": change.filename,
        "body": spec.get("body") or "",
        "line": line,
        "original_line": line,
        "side": side,
        "start_line": start_line,
        "original_start_line": start_line,
        "start_side": start_side,
        "position": target.position,
        "original_position": target.position,
        "diff_hunk": change.diff_hunk(target),
        "commit_id": commit_id,
        "original_commit_id": commit_id,
    }


def _target(change: FileChange, line: Any, side: str, position: Any) -> DiffLine | None:
    if isinstance(line, int):
        return change.locate(line, side)
    if isinstance(position, int):  # the older way: lines below the first @@
        found = [e for e in change.lines if e.position == position and e.kind != "@"]
        return found[0] if found else None
    return None


# === small helpers ========================================================================


def _tips(git: BareRepo) -> dict[str, str]:
    """Each branch's commit."""
    out = git.run("for-each-ref", "--format=%(objectname) %(refname)", "refs/heads").decode()
    return {
        ref.removeprefix("refs/heads/"): sha
        for sha, _, ref in (line.partition(" ") for line in out.splitlines())
    }


def _public(record: Json) -> Json:
    return {k: v for k, v in record.items() if k not in PRIVATE}


def _on(record: Json, pull: Pull) -> bool:
    return (record["_repo"], record["_number"]) == (pull.full_name, pull.number)


def _custom(message: str) -> Json:
    return {"resource": "PullRequest", "code": "custom", "message": message}


def _int(request: web.Request, name: str, default: int) -> int:
    try:
        return int(request.query.get(name, default))
    except ValueError:
        return default


async def _body(request: web.Request) -> Json:
    try:
        data = await request.json() if request.can_read_body else {}
    except ValueError:
        raise _error(400, "Problems parsing JSON") from None
    if not isinstance(data, dict):
        raise _error(400, "Problems parsing JSON")
    return data


def _bearer(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        raise _error(401, "A JSON web token could not be decoded")
    return header.removeprefix("Bearer ")


def _error(
    status: int,
    message: str,
    *,
    errors: list[Any] | None = None,
    headers: dict[str, str] | None = None,
) -> web.HTTPException:
    """An error as GitHub writes it: JSON with `message` (and `errors`) and
    `documentation_url`, of any status (aiohttp keys its classes by status)."""
    body: Json = {"message": message}
    if errors is not None:
        body["errors"] = errors
    body["documentation_url"] = "https://docs.github.com/rest"
    cls: type[web.HTTPException] = type(
        f"HTTP{status}", (web.HTTPException,), {"status_code": status}
    )
    return cls(text=json.dumps(body), content_type="application/json", headers=headers)


def _unprocessable(errors: list[Any], message: str = "Validation Failed") -> web.HTTPException:
    return _error(422, message, errors=errors)


def _routes(fake: FakeGitHub) -> web.Application:
    app = web.Application()
    app.on_startup.append(fake._start_hooks)
    app.on_cleanup.append(fake._stop_hooks)
    r, repo, pulls = app.router, "/repos/{owner}/{repo}", "/repos/{owner}/{repo}/pulls"
    r.add_get("/app", fake.app)
    r.add_get("/app/installations", fake.list_installations)
    r.add_post("/app/installations/{id}/access_tokens", fake.access_token)
    r.add_get("/app/hook/deliveries", fake.hook_deliveries)
    r.add_get("/app/hook/deliveries/{delivery_id:\\d+}", fake.hook_delivery)
    r.add_post("/app/hook/deliveries/{delivery_id:\\d+}/attempts", fake.redeliver)
    r.add_get(f"{repo}/installation", fake.repo_installation)
    r.add_get(f"{repo}/collaborators/{{user}}/permission", fake.collaborator_permission)
    r.add_get(repo, fake.get_repo)
    r.add_get(pulls, fake.list_pulls)
    r.add_post(pulls, fake.create_pull)
    r.add_get(f"{pulls}/{{number:\\d+}}", fake.get_pull)
    r.add_patch(f"{pulls}/{{number:\\d+}}", fake.update_pull)
    r.add_get(f"{pulls}/{{number:\\d+}}/files", fake.pull_files)
    r.add_put(f"{pulls}/{{number:\\d+}}/merge", fake.merge_pull)
    r.add_post(f"{pulls}/{{number:\\d+}}/reviews", fake.create_review)
    r.add_get(f"{pulls}/{{number:\\d+}}/reviews", fake.list_reviews)
    r.add_get(f"{pulls}/{{number:\\d+}}/comments", fake.list_review_comments)
    r.add_post(f"{pulls}/{{number:\\d+}}/comments/{{comment_id:\\d+}}/replies", fake.reply)
    r.add_get(f"{pulls}/comments/{{comment_id:\\d+}}", fake.get_review_comment)
    r.add_post(f"{pulls}/comments/{{comment_id:\\d+}}/reactions", fake.review_comment_reaction)
    r.add_get(f"{repo}/compare/{{basehead:.+}}", fake.compare)
    r.add_get(f"{repo}/contents/{{path:.*}}", fake.contents)
    r.add_delete(f"{repo}/git/refs/{{ref:.+}}", fake.delete_ref)
    r.add_get(f"{repo}/issues/{{number:\\d+}}/comments", fake.list_issue_comments)
    r.add_post(f"{repo}/issues/{{number:\\d+}}/comments", fake.create_issue_comment)
    r.add_get(f"{repo}/issues/comments/{{comment_id:\\d+}}", fake.get_issue_comment)
    r.add_patch(f"{repo}/issues/comments/{{comment_id:\\d+}}", fake.update_issue_comment)
    r.add_post(f"{repo}/issues/comments/{{comment_id:\\d+}}/reactions", fake.issue_comment_reaction)
    r.add_post(f"{repo}/check-runs", fake.create_check_run)
    r.add_patch(f"{repo}/check-runs/{{run_id:\\d+}}", fake.update_check_run)
    r.add_get(f"{repo}/commits/{{ref:.+}}/check-runs", fake.list_check_runs)
    add_manifest_routes(r, fake.manifest_apps)
    add_oauth_routes(r, fake.oauth)
    add_reaction_routes(r, fake)
    add_git_data_routes(r, fake)
    r.add_get("/user", fake.authenticated_user)
    r.add_route("*", "/{owner}/{name:[^/]+\\.git}/{tail:.+}", fake.git_http)
    return app


@contextmanager
def fake_github(
    public_key: str, *, root: Path | None = None, **state: Any
) -> Iterator[tuple[str, FakeGitHub]]:
    """Serve a fake GitHub on loopback: yields (its URL, the fake). Bare repositories live
    under `root` (a temporary directory, removed at exit, when None)."""
    with tempfile.TemporaryDirectory(prefix="fake-github-") as scratch:
        fake = FakeGitHub(public_key, **state)
        fake.home = Path(scratch) / "home"
        fake.home.mkdir()
        fake.root = root if root is not None else Path(scratch) / "repos"
        fake.root.mkdir(parents=True, exist_ok=True)
        with serve(_routes(fake)) as port:
            fake.base_url = f"http://127.0.0.1:{port}"
            yield fake.base_url, fake
