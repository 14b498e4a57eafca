"""The JSON objects the fake GitHub answers with, built from the published
`@octokit/webhooks-examples` payloads with the fake's real values written over them.

Each builder takes the example object GitHub published for that resource, points its links
at the fake server (`base`, which serves both the API and the web and git addresses) and
overwrites every field that carries state; what is left from the example is decoration.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tests.support.fake_github_repos import BareRepo, CommitInfo, FileChange
from tests.support.webhooks import example

BOT_LOGIN = "persais[bot]"
BOT_ID = 9919
EXAMPLE_REPO = "Codertocat/Hello-World"
Json = dict[str, Any]


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def node_id(kind: str, number: int) -> str:
    return base64.b64encode(f"0:{kind}{number}".encode()).decode()


@dataclass
class Repo:
    full_name: str
    id: int
    installation_id: int
    git: BareRepo
    default_branch: str
    created_at: str = field(default_factory=now)
    numbers: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    tips: dict[str, str] = field(default_factory=dict)  # branch -> sha, as last seen

    @property
    def owner(self) -> str:
        return self.full_name.split("/")[0]


@dataclass
class Pull:
    full_name: str
    number: int
    id: int
    head: str
    base: str
    head_sha: str
    base_sha: str
    title: str
    body: str
    user: str
    draft: bool
    state: str = "open"
    merged: bool = False
    merged_at: str | None = None
    merge_commit_sha: str | None = None
    fork: str | None = None  # the fork holding the head branch ("owner/name"), if any
    created_at: str = field(default_factory=now)
    updated_at: str = field(default_factory=now)
    closed_at: str | None = None


def relink(obj: Json, base: str, full: str) -> Json:
    """The example with its github.com addresses pointing at the fake and at `full`."""
    text = json.dumps(obj).replace(EXAMPLE_REPO, full)
    for host in ("https://api.github.com", "https://github.com", "https://uploads.github.com"):
        text = text.replace(host, base)
    relinked: Json = json.loads(text)
    return relinked


def user(base: str, login: str = "octocat", kind: str = "User") -> Json:
    """A user as GitHub shows one; the App's bot is `persais[bot]` (a Bot, id 9919)."""
    found: Json = example("installation", "created")["sender"]
    found = relink(found, base, "")
    if login == BOT_LOGIN:
        kind = "Bot"
    number = BOT_ID if login == BOT_LOGIN else zlib.crc32(login.encode()) % 10**8 + 10**6
    api = f"{base}/users/{login}"
    found.update(
        login=login,
        id=number,
        node_id=node_id("User", number),
        type=kind,
        avatar_url=f"{base}/avatars/u/{number}?v=4",
        html_url=f"{base}/{login}",
        url=api,
        events_url=f"{api}/events{{/privacy}}",
        followers_url=f"{api}/followers",
        following_url=f"{api}/following{{/other_user}}",
        gists_url=f"{api}/gists{{/gist_id}}",
        organizations_url=f"{api}/orgs",
        received_events_url=f"{api}/received_events",
        repos_url=f"{api}/repos",
        starred_url=f"{api}/starred{{/owner}}{{/repo}}",
        subscriptions_url=f"{api}/subscriptions",
    )
    return found


def app(base: str, app_id: int) -> Json:
    """The Persais App as check runs name it."""
    found: Json = relink(example("check_run", "created")["check_run"]["app"], base, "")
    found.update(
        id=app_id,
        slug="persais",
        name="Persais",
        node_id=node_id("App", app_id),
        owner=user(base, "persais-owner"),
        html_url=f"{base}/apps/persais",
        client_id="Iv1.persais",
        description="Persais",
        external_url=f"{base}/persais",
        events=["check_run", "issue_comment", "pull_request", "pull_request_review_comment"],
    )
    return found


def repository(base: str, repo: Repo) -> Json:
    """The full repository object (GET /repos/{o}/{r}); also what payloads carry."""
    full = repo.full_name
    found: Json = relink(example("pull_request", "opened")["repository"], base, full)
    found.update(
        id=repo.id,
        node_id=node_id("Repository", repo.id),
        name=full.split("/")[1],
        full_name=full,
        owner=user(base, repo.owner),
        private=True,
        html_url=f"{base}/{full}",
        url=f"{base}/repos/{full}",
        clone_url=f"{base}/{full}.git",
        svn_url=f"{base}/{full}",
        git_url=f"{base.replace('http', 'git', 1)}/{full}.git",
        ssh_url=f"git@127.0.0.1:{full}.git",
        default_branch=repo.default_branch,
        created_at=repo.created_at,
        updated_at=now(),
        pushed_at=now(),
        description=None,
        has_discussions=False,
        subscribers_count=1,
        network_count=0,
        visibility="private",
        allow_squash_merge=True,
        allow_merge_commit=True,
        allow_rebase_merge=True,
        delete_branch_on_merge=False,
        topics=[],
        permissions={"admin": False, "maintain": False, "push": True, "triage": True, "pull": True},
    )
    return found


def fork(base: str, parent: Json, full: str) -> Json:
    """`parent`'s fork `full`, as a pull request from it names its head repository."""
    found: Json = json.loads(json.dumps(parent).replace(parent["full_name"], full))
    number = zlib.crc32(full.encode()) % 10**8 + 3_000_000
    found.update(
        id=number, node_id=node_id("Repository", number), name=full.split("/")[1],
        full_name=full, owner=user(base, full.split("/")[0]), fork=True,
        permissions={"admin": False, "maintain": False, "push": False, "triage": False,
                     "pull": True},
    )  # fmt: skip
    return found


def push_repository(base: str, repo: Repo) -> Json:
    """The repository as `push` payloads carry it: the full object plus `master_branch`,
    `stargazers`, `created_at` and `pushed_at` as Unix times, and an owner with `name` and
    `email`, as GitHub writes them in that event only."""
    found = repository(base, repo)
    created = datetime.strptime(repo.created_at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    found.update(
        master_branch=repo.default_branch,
        stargazers=found.get("stargazers_count", 0),
        created_at=int(created.timestamp()),
        pushed_at=int(datetime.now(UTC).timestamp()),
        owner={**found["owner"], "name": repo.owner, "email": None},
    )
    return found


NOREPLY = re.compile(r"^(?:\d+\+)?(?P<login>[^@]+)@users\.noreply\.github\.com$")


def push_commit(
    base: str,
    full: str,
    info: CommitInfo,
    *,
    added: list[str],
    removed: list[str],
    modified: list[str],
    distinct: bool,
) -> Json:
    """A commit as a `push` payload lists it (`commits`, `head_commit`); `username` only when
    the email is a GitHub noreply address, as GitHub adds it only for a known account."""

    def person(who: tuple[str, str, str]) -> Json:
        found: Json = {"name": who[0], "email": who[1]}
        if known := NOREPLY.match(who[1]):
            found["username"] = known["login"]
        return found

    return {
        "id": info.sha,
        "tree_id": info.tree,
        "distinct": distinct,
        "message": info.message,
        "timestamp": info.author[2],
        "url": f"{base}/{full}/commit/{info.sha}",
        "author": person(info.author),
        "committer": person(info.committer),
        "added": added,
        "removed": removed,
        "modified": modified,
    }


def pull_request(
    base: str, repo: Json, pull: Pull, *, stats: tuple[int, int, int, int], mergeable: bool | None
) -> Json:
    """A pull request (GET /repos/{o}/{r}/pulls/{n}); stats = commits, +, -, files."""
    full, n = pull.full_name, pull.number
    api, html = f"{base}/repos/{full}", f"{base}/{full}/pull/{n}"
    owner = repo["owner"]
    found: Json = relink(example("pull_request", "opened")["pull_request"], base, full)
    commits, additions, deletions, files = stats

    def side(ref: str, sha: str, where: Json) -> Json:
        return {
            "label": f"{where['owner']['login']}:{ref}",
            "ref": ref,
            "sha": sha,
            "user": where["owner"],
            "repo": where,
        }

    found.update(
        url=f"{api}/pulls/{n}",
        id=pull.id,
        node_id=node_id("PullRequest", pull.id),
        html_url=html,
        diff_url=f"{html}.diff",
        patch_url=f"{html}.patch",
        issue_url=f"{api}/issues/{n}",
        commits_url=f"{api}/pulls/{n}/commits",
        review_comments_url=f"{api}/pulls/{n}/comments",
        review_comment_url=f"{api}/pulls/comments{{/number}}",
        comments_url=f"{api}/issues/{n}/comments",
        statuses_url=f"{api}/statuses/{pull.head_sha}",
        number=n,
        state=pull.state,
        locked=False,
        title=pull.title,
        body=pull.body,
        user=user(base, pull.user),
        labels=[],
        milestone=None,
        draft=pull.draft,
        created_at=pull.created_at,
        updated_at=pull.updated_at,
        closed_at=pull.closed_at,
        merged_at=pull.merged_at,
        merge_commit_sha=pull.merge_commit_sha,
        head=side(pull.head, pull.head_sha, fork(base, repo, pull.fork) if pull.fork else repo),
        base=side(pull.base, pull.base_sha, repo),
        author_association="OWNER" if pull.user == owner["login"] else "CONTRIBUTOR",
        auto_merge=None,
        merged=pull.merged,
        mergeable=mergeable,
        rebaseable=mergeable,
        mergeable_state={True: "clean", False: "dirty", None: "unknown"}[mergeable],
        merged_by=user(base, BOT_LOGIN) if pull.merged else None,
        comments=0,
        review_comments=0,
        maintainer_can_modify=False,
        commits=commits,
        additions=additions,
        deletions=deletions,
        changed_files=files,
        assignee=None,
        assignees=[],
        requested_reviewers=[],
        requested_teams=[],
        active_lock_reason=None,
        _links={
            "self": {"href": f"{api}/pulls/{n}"},
            "html": {"href": html},
            "issue": {"href": f"{api}/issues/{n}"},
            "comments": {"href": f"{api}/issues/{n}/comments"},
            "review_comments": {"href": f"{api}/pulls/{n}/comments"},
            "review_comment": {"href": f"{api}/pulls/comments{{/number}}"},
            "commits": {"href": f"{api}/pulls/{n}/commits"},
            "statuses": {"href": f"{api}/statuses/{pull.head_sha}"},
        },
    )
    return found


def diff_entry(base: str, full: str, head_sha: str, change: FileChange) -> Json:
    """One file of a pull request or a comparison; no `patch` when git shows none."""
    entry: Json = {
        "sha": change.sha,
        "filename": change.filename,
        "status": change.status,
        "additions": change.additions,
        "deletions": change.deletions,
        "changes": change.additions + change.deletions,
        "blob_url": f"{base}/{full}/blob/{head_sha}/{change.filename}",
        "raw_url": f"{base}/{full}/raw/{head_sha}/{change.filename}",
        "contents_url": f"{base}/repos/{full}/contents/{change.filename}?ref={head_sha}",
    }
    if change.patch is not None:
        entry["patch"] = change.patch
    if change.previous_filename is not None:
        entry["previous_filename"] = change.previous_filename
    return entry


def review(base: str, full: str, number: int, review_id: int, **fields: Any) -> Json:
    """A pull request review; `fields` are user, body, state, commit_id, author_association."""
    found: Json = relink(example("pull_request_review", "submitted")["review"], base, full)
    html = f"{base}/{full}/pull/{number}#pullrequestreview-{review_id}"
    pull_url = f"{base}/repos/{full}/pulls/{number}"
    found.update(
        id=review_id,
        node_id=node_id("PullRequestReview", review_id),
        html_url=html,
        pull_request_url=pull_url,
        submitted_at=now(),
        _links={"html": {"href": html}, "pull_request": {"href": pull_url}},
        **fields,
    )
    return found


def review_comment(base: str, full: str, number: int, comment_id: int, **fields: Any) -> Json:
    """A review comment; `fields` carry review id, path, lines, diff_hunk, body, user…"""
    found: Json = relink(example("pull_request_review_comment", "created")["comment"], base, full)
    api = f"{base}/repos/{full}"
    html = f"{base}/{full}/pull/{number}#discussion_r{comment_id}"
    found.update(
        id=comment_id,
        node_id=node_id("PullRequestReviewComment", comment_id),
        url=f"{api}/pulls/comments/{comment_id}",
        html_url=html,
        pull_request_url=f"{api}/pulls/{number}",
        created_at=now(),
        updated_at=now(),
        subject_type="line",
        reactions=reactions(f"{api}/pulls/comments/{comment_id}/reactions"),
        _links={
            "self": {"href": f"{api}/pulls/comments/{comment_id}"},
            "html": {"href": html},
            "pull_request": {"href": f"{api}/pulls/{number}"},
        },
        **fields,
    )
    return found


def issue_comment(base: str, full: str, number: int, comment_id: int, **fields: Any) -> Json:
    """An issue (or pull request conversation) comment; `fields`: user, body, association."""
    found: Json = relink(example("issue_comment", "created")["comment"], base, full)
    api = f"{base}/repos/{full}"
    found.update(
        id=comment_id,
        node_id=node_id("IssueComment", comment_id),
        url=f"{api}/issues/comments/{comment_id}",
        html_url=f"{base}/{full}/pull/{number}#issuecomment-{comment_id}",
        issue_url=f"{api}/issues/{number}",
        created_at=now(),
        updated_at=now(),
        **fields,
    )
    return found


def reactions(url: str) -> Json:
    """The reaction rollup GitHub puts on comments (the fake counts none there)."""
    counts = dict.fromkeys(
        ("+1", "-1", "laugh", "hooray", "confused", "heart", "rocket", "eyes"), 0
    )
    return {"url": url, "total_count": 0, **counts}


def reaction(base: str, reaction_id: int, login: str, content: str) -> Json:
    return {
        "id": reaction_id,
        "node_id": node_id("Reaction", reaction_id),
        "user": user(base, login),
        "content": content,
        "created_at": now(),
    }


def check_run(base: str, full: str, run_id: int, app_object: Json, **fields: Any) -> Json:
    """A check run; `fields`: name, head_sha, status, conclusion, times, output, …"""
    found: Json = relink(example("check_run", "created")["check_run"], base, full)
    api = f"{base}/repos/{full}"
    found.update(
        id=run_id,
        node_id=node_id("CheckRun", run_id),
        url=f"{api}/check-runs/{run_id}",
        html_url=f"{base}/{full}/runs/{run_id}",
        details_url=f"{base}/{full}/runs/{run_id}",
        external_id="",
        app=app_object,
        check_suite={"id": run_id + 500_000},
        conclusion=None,
        completed_at=None,
        pull_requests=[],
    )
    found.update(fields)
    return found


def check_output(base: str, full: str, run_id: int, output: Json, count: int) -> Json:
    return {
        "title": output.get("title"),
        "summary": output.get("summary"),
        "text": output.get("text"),
        "annotations_count": count,
        "annotations_url": f"{base}/repos/{full}/check-runs/{run_id}/annotations",
    }


def pull_reference(base: str, repo: Repo, pull: Pull) -> Json:
    """How a check run names the pull requests of its head sha."""
    short = {
        "id": repo.id,
        "name": repo.full_name.split("/")[1],
        "url": f"{base}/repos/{repo.full_name}",
    }
    return {
        "id": pull.id,
        "number": pull.number,
        "url": f"{base}/repos/{repo.full_name}/pulls/{pull.number}",
        "head": {"ref": pull.head, "sha": pull.head_sha, "repo": short},
        "base": {"ref": pull.base, "sha": pull.base_sha, "repo": short},
    }


def commit(base: str, full: str, info: CommitInfo) -> Json:
    """A commit as the compare endpoint lists it (authors are no GitHub users here)."""
    api, html = f"{base}/repos/{full}", f"{base}/{full}"

    def person(who: tuple[str, str, str]) -> Json:
        return {"name": who[0], "email": who[1], "date": who[2]}

    return {
        "url": f"{api}/commits/{info.sha}",
        "sha": info.sha,
        "node_id": node_id("Commit", zlib.crc32(info.sha.encode())),
        "html_url": f"{html}/commit/{info.sha}",
        "comments_url": f"{api}/commits/{info.sha}/comments",
        "commit": {
            "url": f"{api}/git/commits/{info.sha}",
            "author": person(info.author),
            "committer": person(info.committer),
            "message": info.message,
            "comment_count": 0,
            "tree": {"sha": info.tree, "url": f"{api}/git/trees/{info.tree}"},
        },
        "author": None,
        "committer": None,
        "parents": [
            {"sha": p, "url": f"{api}/commits/{p}", "html_url": f"{html}/commit/{p}"}
            for p in info.parents
        ],
    }


def content_file(base: str, full: str, ref: str, path: str, sha: str, data: bytes) -> Json:
    """A file of GET /repos/{o}/{r}/contents/{path}: base64 in lines of 60, as GitHub does."""
    encoded = base64.b64encode(data).decode()
    lines = "".join(encoded[i : i + 60] + "\n" for i in range(0, len(encoded), 60))
    api = f"{base}/repos/{full}/contents/{path}?ref={ref}"
    git = f"{base}/repos/{full}/git/blobs/{sha}"
    html = f"{base}/{full}/blob/{ref}/{path}"
    return {
        "type": "file",
        "encoding": "base64",
        "size": len(data),
        "name": path.split("/")[-1],
        "path": path,
        "content": lines,
        "sha": sha,
        "url": api,
        "git_url": git,
        "html_url": html,
        "download_url": f"{base}/{full}/raw/{ref}/{path}",
        "_links": {"self": api, "git": git, "html": html},
    }


def delivery(
    delivery_id: int,
    guid: str,
    event: str,
    action: str | None,
    *,
    status_code: int,
    delivered_at: datetime,
    redelivery: bool,
    installation_id: int | None,
    repository_id: int | None,
) -> Json:
    """A webhook delivery of the App's hook, as GET /app/hook/deliveries lists it."""
    ok = 200 <= status_code < 300
    return {
        "id": delivery_id,
        "guid": guid,
        "delivered_at": delivered_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "redelivery": redelivery,
        "duration": 0.27,
        "status": "OK" if ok else f"Invalid HTTP Response: {status_code}",
        "status_code": status_code,
        "event": event,
        "action": action,
        "installation_id": installation_id,
        "repository_id": repository_id,
        "throttled_at": None,
    }
