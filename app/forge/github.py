"""The GitHub forge: the home repository on GitHub (`PERSAIS_HOME_REPO`), through the App.

A bare mirror under `PERSAIS_HOME` holds what the Mechanic makes worktrees from; git talks
to GitHub over HTTPS with an installation token handed to git in its environment (never in
a URL, a config file, a log line or the process's arguments). Pull requests are opened,
found again and closed through the same githubkit client as everything else, so a retried
job finds its pull request instead of opening a second one.
"""

from __future__ import annotations

import asyncio
import base64
import os
from pathlib import Path
from typing import Any

from githubkit.exception import RequestFailed

from app.forge.local import revert_commit
from app.github.client import GitHubApp
from mechanic.forge import MergeRefused, PullRequest, PullState
from mechanic.sandbox import search_path
from mechanic.workspace import GitError


class GitHubForge:
    def __init__(self, app: GitHubApp, home: Path, repository: str) -> None:
        self.app = app
        self.full_name = repository
        self.owner, self.name = repository.split("/", 1)
        self.bare = home / "forge" / "github" / self.owner / f"{self.name}.git"
        self._lock = asyncio.Lock()

    async def installation(self) -> int:
        return await self.app.installation_for(self.owner, self.name)

    async def _client(self) -> Any:
        return self.app.installation(await self.installation())

    async def git(self, *args: str, cwd: Path | None = None) -> str:
        """git with the installation's token for this one command (environment only)."""
        token = await self.app.token(await self.installation())
        basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
        env = {
            "GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1", "PATH": search_path(),
            "HOME": str(cwd or self.bare.parent), "GIT_CONFIG_COUNT": "1",
            "GIT_CONFIG_KEY_0": "http.extraHeader",
            "GIT_CONFIG_VALUE_0": f"Authorization: Basic {basic}",
        }  # fmt: skip
        if "SSL_CERT_FILE" in os.environ:  # a corporate CA bundle, if the host has one
            env["SSL_CERT_FILE"] = os.environ["SSL_CERT_FILE"]
        proc = await asyncio.create_subprocess_exec(
            "git", *args, cwd=cwd or self.bare, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await proc.communicate()
        if proc.returncode != 0:
            message = err.decode(errors="replace").replace(token, "***").strip()
            raise GitError(f"git {args[0]} failed: {message[-500:]}")
        return out.decode(errors="replace")

    async def repository(self) -> Path:
        """The mirror, brought up to date with the default branch."""
        async with self._lock:
            client = await self._client()
            repo = (await client.rest.repos.async_get(self.owner, self.name)).json()
            branch = str(repo["default_branch"])
            if not (self.bare / "HEAD").exists():
                self.bare.parent.mkdir(parents=True, exist_ok=True)
                await self.git(
                    "clone", "-q", "--bare", str(repo["clone_url"]), str(self.bare),
                    cwd=self.bare.parent,
                )  # fmt: skip
            else:
                await self.git("fetch", "-q", "origin", f"+refs/heads/{branch}:refs/heads/{branch}")
        return self.bare

    async def fetch_branch(self, branch: str) -> None:
        """Bring one branch (a pull request's head) into the mirror."""
        await self.repository()
        async with self._lock:
            await self.git("fetch", "-q", "origin", f"+refs/heads/{branch}:refs/heads/{branch}")

    async def push(self, branch: str, *, force: bool = False) -> None:
        spec = f"{'+' if force else ''}refs/heads/{branch}:refs/heads/{branch}"
        await self.git("push", "-q", "origin", spec)

    async def publish(
        self, *, job_id: str, branch: str, head_sha: str, base: str, title: str, body: str
    ) -> PullRequest:
        await self.push(branch, force=True)  # the job's own branch: a retry replaces it
        client = await self._client()
        found = await self._open_pull(branch)
        if found is None:
            try:
                response = await client.rest.pulls.async_create(
                    self.owner, self.name, head=branch, base=base, title=title, body=body
                )
                found = response.json()
            except RequestFailed as exc:  # opened meanwhile (a retry racing its first run)
                if exc.response.status_code != 422:
                    raise
                found = await self._open_pull(branch)
                if found is None:
                    raise
        return PullRequest(
            number=int(found["number"]), url=str(found["html_url"]), branch=branch,
            head_sha=head_sha,
        )  # fmt: skip

    async def pull_request(self, number: int) -> PullRequest:
        client = await self._client()
        pull = (await client.rest.pulls.async_get(self.owner, self.name, number)).json()
        if pull["state"] != "open":
            raise LookupError(f"pull request #{number} is not open")
        if pull["head"]["repo"]["full_name"] != self.full_name:
            raise LookupError(f"pull request #{number} comes from a fork; its branch is not ours")
        branch = str(pull["head"]["ref"])
        await self.fetch_branch(branch)
        return PullRequest(number, str(pull["html_url"]), branch, str(pull["head"]["sha"]))

    async def update(self, pull: PullRequest) -> None:
        await self.push(pull.branch)  # a fast-forward: someone else's new commits refuse it

    async def _open_pull(self, branch: str) -> dict[str, Any] | None:
        client = await self._client()
        response = await client.rest.pulls.async_list(
            self.owner, self.name, state="open", head=f"{self.owner}:{branch}"
        )
        pulls = response.json()
        return dict(pulls[0]) if pulls else None

    async def withdraw(self, *, job_id: str, branch: str) -> None:
        if not branch:
            return
        client = await self._client()
        found = await self._open_pull(branch)
        if found is not None:
            await client.rest.pulls.async_update(
                self.owner, self.name, int(found["number"]), state="closed"
            )
        try:
            await client.rest.git.async_delete_ref(self.owner, self.name, f"heads/{branch}")
        except RequestFailed as exc:
            if exc.response.status_code not in (404, 422):  # already gone
                raise
        if (self.bare / "HEAD").exists():
            proc = await asyncio.create_subprocess_exec(
                "git", "branch", "-D", branch, cwd=self.bare,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
            await proc.wait()

    async def pull_state(self, number: int) -> PullState:
        client = await self._client()
        try:
            pull = (await client.rest.pulls.async_get(self.owner, self.name, number)).json()
        except RequestFailed as exc:
            if exc.response.status_code == 404:
                raise LookupError(f"there is no pull request #{number}") from None
            raise
        state = "merged" if pull.get("merged") else str(pull["state"])
        return PullState(
            number, str(pull["html_url"]), state, str(pull["head"]["ref"]),
            str(pull["base"]["ref"]), str(pull["head"]["sha"]),
            str(pull["merge_commit_sha"]) if pull.get("merged") else None,
        )  # fmt: skip

    async def merge(self, number: int, *, sha: str, title: str) -> str:
        """Squash-merge on GitHub, only if the head is still `sha`; the mirror then holds
        the merge commit."""
        pull = await self.pull_state(number)
        if pull.state == "merged" and pull.merge_sha:
            merged = pull.merge_sha
        elif pull.state != "open":
            raise MergeRefused(f"pull request #{number} is {pull.state}")
        else:
            client = await self._client()
            try:
                response = await client.rest.pulls.async_merge(
                    self.owner, self.name, number, sha=sha, merge_method="squash",
                    commit_title=f"{title} (#{number})",
                )  # fmt: skip
            except RequestFailed as exc:
                if exc.response.status_code in (405, 409, 422):
                    message = exc.response.json().get("message", "")
                    raise MergeRefused(f"GitHub would not merge #{number}: {message}") from None
                raise
            merged = str(response.json()["sha"])
        await self.repository()  # fetches the default branch, with the merge commit
        return merged

    async def checks(self, sha: str) -> list[str]:
        """What keeps `sha` from being green: check runs not finished, or not successful."""
        client = await self._client()
        problems = []
        page = 1
        while True:
            response = await client.rest.checks.async_list_for_ref(
                self.owner, self.name, sha, per_page=100, page=page
            )
            runs = response.json()["check_runs"]
            for run in runs:
                if run["status"] != "completed":
                    problems.append(f"{run['name']} is {run['status']}")
                elif run["conclusion"] not in ("success", "neutral", "skipped"):
                    problems.append(f"{run['name']}: {run['conclusion']}")
            if len(runs) < 100:
                return problems
            page += 1

    async def changed_paths(self, sha: str) -> list[str]:
        out = await self.git("diff-tree", "--no-commit-id", "--name-only", "-r", sha)
        return [line for line in out.splitlines() if line]

    async def revert_branch(self, sha: str, base: str, branch: str, title: str) -> str:
        repo = await self.repository()
        async with self._lock:
            return await revert_commit(repo, sha, base, branch, title)
