"""The fake GitHub's git database ("Git database" endpoints of GitHub's REST API), on the
real bare repositories, and pull requests from forks.

What it answers, as GitHub's docs describe it:
- `GET /repos/{o}/{r}/git/commits/{sha}`: a commit (`tree`, `parents`, `author`, `message`).
- `GET /repos/{o}/{r}/git/trees/{sha}`: a tree's entries (`path`, `mode`, `type`, `sha`,
  `size` for blobs), one level deep.
- `POST /repos/{o}/{r}/git/trees` `{base_tree, tree: [{path, mode, type, sha | content}]}`:
  the entries written over `base_tree` (a `sha` of null deletes the path); 201 with the tree.
- `POST /repos/{o}/{r}/git/commits` `{message, tree, parents, author?, committer?}`: 201 with
  the commit. Without `author`, the author and committer are the authenticated user: for an
  installation token, the App's bot (`persais[bot]`, `<id>+persais[bot]@users.noreply…`).
- `GET /repos/{o}/{r}/git/ref/heads/{branch}`: the branch's ref (404 when there is none).
- `PATCH /repos/{o}/{r}/git/refs/heads/{branch}` `{sha, force}`: moves the branch. Without
  `force`, a commit that does not descend from the branch's tip is a 422 "Update is not a
  fast forward" and the branch stays; a missing branch is a 422 "Reference does not exist".
  The move is delivered as any push is (`push`, then `pull_request.synchronize`).

`open_fork_pull` opens a pull request whose head branch lives in a fork the App is not
installed on: its commits are in the base repository under `refs/pull/<n>/head`, as GitHub
keeps them, and the branch itself is not there. `on_ref_update` lets a test push in the
moment between a commit's creation and the branch update, as a person's push can land.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from tests.support.fake_github_objects import BOT_ID, BOT_LOGIN, Json, Repo, node_id

if TYPE_CHECKING:
    from tests.support.fake_github import FakeGitHub

BOT_EMAIL = f"{BOT_ID}+{BOT_LOGIN}@users.noreply.github.com"
MODES = {"100644": "blob", "100755": "blob", "120000": "blob", "040000": "tree", "160000": "commit"}
# A test's hook per fake GitHub (by id: the fake is a dataclass, not hashable): called with
# the branch just before a PATCH of its ref is applied.
_REF_HOOKS: dict[int, Callable[[str], None]] = {}


@contextmanager
def on_ref_update(fake: FakeGitHub, hook: Callable[[str], None]) -> Iterator[None]:
    """Call `hook(branch)` before each ref update the App asks for, while in this block."""
    _REF_HOOKS[id(fake)] = hook
    try:
        yield
    finally:
        _REF_HOOKS.pop(id(fake), None)


def open_fork_pull(
    fake: FakeGitHub,
    full: str,
    fork_owner: str,
    branch: str,
    changes: dict[str, str | bytes | None],
    *,
    title: str = "A change from a fork",
    user: str | None = None,
) -> int:
    """`fork_owner` opens a pull request on `full` from `branch` of their fork."""
    repo = fake.repos[full]
    with fake.lock:
        parent = repo.git.resolve(repo.default_branch)
        sha = repo.git.commit(branch, changes, message="change", parent=parent)
        pull = fake._open(repo, branch, repo.default_branch, title, "", user or fork_owner, False)
        repo.git.run("update-ref", f"refs/pull/{pull.number}/head", sha)
        repo.git.delete_branch(branch)  # it lives in the fork, never in `full`
        pull.fork = f"{fork_owner}/{full.split('/', 1)[1]}"
        fake._pull_event(pull, "opened", user or fork_owner)
    return pull.number


def add_git_data_routes(router: web.UrlDispatcher, fake: FakeGitHub) -> None:
    repo, on = "/repos/{owner}/{repo}/git", partial
    router.add_get(f"{repo}/commits/{{sha}}", on(_get_commit, fake))
    router.add_get(f"{repo}/trees/{{sha}}", on(_get_tree, fake))
    router.add_post(f"{repo}/trees", on(_create_tree, fake))
    router.add_post(f"{repo}/commits", on(_create_commit, fake))
    router.add_get(f"{repo}/ref/heads/{{branch:.+}}", on(_get_ref, fake))
    router.add_patch(f"{repo}/refs/heads/{{branch:.+}}", on(_update_ref, fake))


# === handlers ==============================================================================


async def _get_commit(fake: FakeGitHub, request: web.Request) -> web.Response:
    repo = fake._repo(request)
    sha = request.match_info["sha"]
    if _kind(repo, sha) != "commit":
        raise _error(404, "Not Found")
    return web.json_response(_commit(fake.base_url, repo, sha))


async def _get_tree(fake: FakeGitHub, request: web.Request) -> web.Response:
    repo = fake._repo(request)
    sha = request.match_info["sha"]
    if _kind(repo, sha) != "tree":
        raise _error(404, "Not Found")
    return web.json_response(_tree(fake.base_url, repo, sha))


async def _create_tree(fake: FakeGitHub, request: web.Request) -> web.Response:
    repo = fake._repo(request)
    data = await _body(request)
    entries, base = data.get("tree"), data.get("base_tree")
    if not isinstance(entries, list) or not entries:
        raise _unprocessable("Invalid tree info")
    if base is not None and _kind(repo, str(base)) != "tree":
        raise _unprocessable("Invalid tree info")  # GitHub: base_tree must be a tree sha
    with tempfile.TemporaryDirectory(prefix="fake-tree-") as scratch:
        index = {"GIT_INDEX_FILE": str(Path(scratch) / "index")}
        _git(repo, index, "read-tree", *([str(base)] if base else ["--empty"]))
        for entry in entries:
            _stage(repo, index, entry)
        sha = _git(repo, index, "write-tree").decode().strip()
    return web.json_response(_tree(fake.base_url, repo, sha), status=201)


async def _create_commit(fake: FakeGitHub, request: web.Request) -> web.Response:
    repo = fake._repo(request)
    data = await _body(request)
    message, tree, parents = data.get("message"), data.get("tree"), data.get("parents") or []
    if not isinstance(message, str) or not isinstance(tree, str) or not isinstance(parents, list):
        raise _unprocessable("Invalid request.")
    if _kind(repo, tree) != "tree":
        raise _unprocessable("Tree SHA does not exist")
    if any(_kind(repo, str(p)) != "commit" for p in parents):
        raise _unprocessable("Parent SHA does not exist or is not a commit object")
    author = data.get("author") or {"name": BOT_LOGIN, "email": BOT_EMAIL}
    committer = data.get("committer") or author
    who = {
        "GIT_AUTHOR_NAME": str(author["name"]), "GIT_AUTHOR_EMAIL": str(author["email"]),
        "GIT_COMMITTER_NAME": str(committer["name"]),
        "GIT_COMMITTER_EMAIL": str(committer["email"]),
    }  # fmt: skip
    args = [arg for parent in parents for arg in ("-p", str(parent))]
    sha = _git(repo, who, "commit-tree", tree, *args, stdin=message.encode()).decode().strip()
    return web.json_response(_commit(fake.base_url, repo, sha), status=201)


async def _get_ref(fake: FakeGitHub, request: web.Request) -> web.Response:
    repo = fake._repo(request)
    branch = request.match_info["branch"]
    sha = repo.git.branch(branch)
    if sha is None:
        raise _error(404, "Not Found")
    return web.json_response(_ref(fake.base_url, repo, branch, sha))


async def _update_ref(fake: FakeGitHub, request: web.Request) -> web.Response:
    repo = fake._repo(request)
    branch = request.match_info["branch"]
    data = await _body(request)
    sha = data.get("sha")
    if not isinstance(sha, str) or _kind(repo, sha) != "commit":
        raise _unprocessable("Object does not exist")
    hook = _REF_HOOKS.get(id(fake))
    if hook is not None:
        hook(branch)
    with fake.lock:
        tip = repo.git.branch(branch)
        if tip is None:
            raise _unprocessable("Reference does not exist")
        forward = repo.git.attempt("merge-base", "--is-ancestor", tip, sha)[0] == 0
        if not forward and not data.get("force"):
            raise _unprocessable("Update is not a fast forward")
        repo.git.update_ref(branch, sha, tip)  # compare-and-swap: `tip` or nothing
        fake._sync_heads(repo, BOT_LOGIN)
    return web.json_response(_ref(fake.base_url, repo, branch, sha))


# === git ===================================================================================


def _git(repo: Repo, env: dict[str, str], *args: str, stdin: bytes | None = None) -> bytes:
    done = subprocess.run(
        ["git", "--git-dir", str(repo.git.path), *args],
        input=stdin, capture_output=True, env={**repo.git.env, **env}, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise _unprocessable(done.stderr.decode(errors="replace").strip() or "git failed")
    return done.stdout


def _stage(repo: Repo, index: dict[str, str], entry: Any) -> None:
    """One entry of a tree request into the scratch index."""
    if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
        raise _unprocessable("Invalid tree info")
    path, mode = entry["path"], str(entry.get("mode") or "")
    if mode not in MODES or entry.get("type", MODES[mode]) != MODES[mode]:
        raise _unprocessable(f"Invalid tree info: mode {mode!r} for {path}")
    if "content" in entry:
        content = str(entry["content"]).encode()
        sha = _git(repo, {}, "hash-object", "-w", "--stdin", stdin=content).decode().strip()
    elif entry.get("sha") is None:
        _git(repo, index, "update-index", "--force-remove", "--", path)
        return
    else:
        sha = str(entry["sha"])
        if _kind(repo, sha) is None:
            raise _unprocessable(f"Invalid tree info: {sha} does not exist")
    _git(repo, index, "update-index", "--add", "--cacheinfo", f"{mode},{sha},{path}")


def _kind(repo: Repo, sha: str) -> str | None:
    if len(sha) != 40 or any(c not in "0123456789abcdef" for c in sha):
        return None
    found = repo.git.run("cat-file", "-t", sha, check=False).decode().strip()
    return found or None


def _commit(base: str, repo: Repo, sha: str) -> Json:
    """A commit as the git database answers it."""
    (info,) = repo.git.commits("-1", sha)
    api, html = f"{base}/repos/{repo.full_name}", f"{base}/{repo.full_name}"

    def person(who: tuple[str, str, str]) -> Json:
        return {"name": who[0], "email": who[1], "date": who[2]}

    return {
        "sha": sha, "node_id": node_id("Commit", int(sha[:7], 16)),
        "url": f"{api}/git/commits/{sha}", "html_url": f"{html}/commit/{sha}",
        "author": person(info.author), "committer": person(info.committer),
        "message": info.message,
        "tree": {"sha": info.tree, "url": f"{api}/git/trees/{info.tree}"},
        "parents": [{"sha": p, "url": f"{api}/git/commits/{p}", "html_url": f"{html}/commit/{p}"}
                    for p in info.parents],
        "verification": {"verified": False, "reason": "unsigned", "signature": None,
                         "payload": None, "verified_at": None},
    }  # fmt: skip


def _ref(base: str, repo: Repo, branch: str, sha: str) -> Json:
    api = f"{base}/repos/{repo.full_name}/git"
    return {
        "ref": f"refs/heads/{branch}", "node_id": node_id("Ref", zlib.crc32(branch.encode())),
        "url": f"{api}/refs/heads/{branch}",
        "object": {"type": "commit", "sha": sha, "url": f"{api}/commits/{sha}"},
    }  # fmt: skip


def _tree(base: str, repo: Repo, sha: str) -> Json:
    api = f"{base}/repos/{repo.full_name}/git"
    entries = []
    for mode, kind, item, size, name in repo.git.tree(sha, "") or []:
        entry: Json = {"path": name, "mode": mode, "type": kind, "sha": item}
        if kind == "blob":
            entry["size"] = size
        entry["url"] = f"{api}/{'trees' if kind == 'tree' else 'blobs'}/{item}"
        entries.append(entry)
    return {"sha": sha, "url": f"{api}/trees/{sha}", "tree": entries, "truncated": False}


# === answers ===============================================================================


async def _body(request: web.Request) -> Json:
    try:
        data = await request.json() if request.can_read_body else {}
    except ValueError:
        raise _error(400, "Problems parsing JSON") from None
    if not isinstance(data, dict):
        raise _error(400, "Problems parsing JSON")
    return data


def _unprocessable(message: str) -> web.HTTPException:
    return _error(422, message)


def _error(status: int, message: str) -> web.HTTPException:
    body = {"message": message, "documentation_url": "https://docs.github.com/rest/git"}
    cls: type[web.HTTPException] = type(
        f"HTTP{status}", (web.HTTPException,), {"status_code": status}
    )
    return cls(text=json.dumps(body), content_type="application/json")
