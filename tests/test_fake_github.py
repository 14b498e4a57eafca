"""The fake GitHub answers as GitHub does, as githubkit's typed methods parse it, from real
bare repositories: a pull request's files, review validation, check runs, merges, contents,
webhook deliveries, comments and reactions, git over smart HTTP with installation tokens, and
the App's webhooks it delivers itself, as GitHub does (pull requests, comments, a person's
reply to a review comment, and a `push` for every branch that moves).
"""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import threading
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import web
from githubkit import GitHub
from githubkit.exception import RequestFailed
from githubkit.webhooks import parse_obj

from app.github.client import GitHubApp
from app.settings import load_settings
from app.web.signature import github_signature, verify_github
from tests.support.fake_github import APP_ID, BOT_LOGIN, FakeGitHub, app_key_pair, fake_github
from tests.support.fake_github_repos import git_env
from tests.support.loopback import serve
from tests.support.waiting import wait_for
from tests.support.webhooks import GITHUB_SECRET

PRIVATE, PUBLIC = app_key_pair()
REPO = "octo/home"
T = TypeVar("T")
Completed = subprocess.CompletedProcess[str]


def numbered(count: int, changed: dict[int, str] | None = None) -> str:
    changed = changed or {}
    return "".join(changed.get(i, f"line {i}") + "\n" for i in range(1, count + 1))


@dataclass
class Hub:
    url: str
    fake: FakeGitHub
    github: GitHubApp

    def run(self, work: Callable[[GitHub[Any]], Coroutine[Any, Any, T]]) -> T:
        """Run `work` with an installation client of installation 77."""
        return asyncio.run(work(self.github.installation(77)))


@pytest.fixture
def hub() -> Iterator[Hub]:
    with fake_github(PUBLIC) as (url, fake):
        settings = load_settings(
            None, GITHUB_APP_ID=APP_ID, GITHUB_PRIVATE_KEY=PRIVATE, GITHUB_API_URL=url
        )
        fake.add_repo(REPO, 77, files={"app.py": numbered(40), "notes.txt": numbered(12),
                                       "old.txt": "bye\n"})  # fmt: skip
        yield Hub(url, fake, GitHubApp(settings))


def a_change(hub: Hub) -> int:
    """A pull request with a two-hunk edit, a rename with an edit, a deletion and an added
    binary file."""
    hub.fake.push(
        REPO, "feature",
        {"app.py": numbered(40, {3: "three", 31: "thirty-one"}),
         "docs/notes.md": numbered(12, {12: "twelve"}), "old.txt": None,
         "logo.png": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"},
        renames={"notes.txt": "docs/notes.md"}, message="A change",
    )  # fmt: skip
    return hub.fake.open_pull(REPO, "feature", title="A change")


def test_files_of_a_pull_request_are_listed_as_github_does(hub: Hub) -> None:
    number = a_change(hub)
    files = hub.run(lambda c: c.rest.pulls.async_list_files("octo", "home", number)).parsed_data
    by_name = {f.filename: f for f in files}
    assert sorted(by_name) == ["app.py", "docs/notes.md", "logo.png", "old.txt"]

    edit = by_name["app.py"]
    assert (edit.status, edit.additions, edit.deletions, edit.changes) == ("modified", 2, 2, 4)
    assert edit.patch == (
        "@@ -1,6 +1,6 @@\n line 1\n line 2\n-line 3\n+three\n line 4\n line 5\n line 6\n"
        "@@ -28,7 +28,7 @@ line 27\n line 28\n line 29\n line 30\n-line 31\n+thirty-one\n"
        " line 32\n line 33\n line 34"
    )
    moved = by_name["docs/notes.md"]
    assert (moved.status, moved.previous_filename) == ("renamed", "notes.txt")
    assert (moved.additions, moved.deletions) == (1, 1)
    assert str(moved.patch).startswith("@@ -9,4 +9,4 @@")
    gone = by_name["old.txt"]
    assert (gone.status, gone.deletions, gone.patch) == ("removed", 1, "@@ -1 +0,0 @@\n-bye")
    binary = by_name["logo.png"]
    assert binary.status == "added"
    assert (binary.additions, binary.deletions) == (0, 0)
    assert "patch" not in binary.model_dump(exclude_unset=True)  # GitHub omits it
    head = hub.fake.pulls[(REPO, number)].head_sha
    assert edit.blob_url == f"{hub.url}/octo/home/blob/{head}/app.py"


def test_files_are_paginated_with_a_link_header(hub: Hub) -> None:
    hub.fake.push(REPO, "many", {f"f/{i:03}.txt": f"{i}\n" for i in range(120)})
    number = hub.fake.open_pull(REPO, "many")

    async def pages(c: GitHub[Any]) -> tuple[str, list[str]]:
        first = await c.rest.pulls.async_list_files("octo", "home", number, per_page=50)
        names = [
            f.filename
            async for f in c.rest.paginate(
                c.rest.pulls.async_list_files, owner="octo", repo="home", pull_number=number,
                per_page=50,
            )
        ]  # fmt: skip
        return first.headers["link"], names

    link, names = hub.run(pages)
    path = f"{hub.url}/repos/octo/home/pulls/{number}/files"
    assert link == (
        f'<{path}?per_page=50&page=2>; rel="next", <{path}?per_page=50&page=3>; rel="last"'
    )
    assert names == [f"f/{i:03}.txt" for i in range(120)]


def test_review_comments_must_be_on_the_diff(hub: Hub) -> None:
    number = a_change(hub)

    def review(comment: Any) -> Callable[[GitHub[Any]], Coroutine[Any, Any, Any]]:
        return lambda c: c.rest.pulls.async_create_review(
            "octo", "home", number, event="COMMENT", body="Looks fine", comments=[comment]
        )

    outside = {"path": "app.py", "line": 20, "body": "not in any hunk"}
    with pytest.raises(RequestFailed) as refused:
        hub.run(review(outside))
    assert refused.value.response.status_code == 422
    assert refused.value.response.json()["errors"] == ["Line could not be resolved"]
    with pytest.raises(RequestFailed):  # a removed line is only on the LEFT
        hub.run(review({"path": "app.py", "line": 31, "side": "LEFT", "start_line": 3,
                        "body": "across hunks"}))  # fmt: skip
    assert hub.fake.reviews == []
    assert hub.fake.review_comments == []

    made = hub.run(review({"path": "app.py", "line": 31, "body": "Why thirty-one?"})).parsed_data
    assert (made.state, made.user.login if made.user else None) == ("COMMENTED", BOT_LOGIN)
    left = hub.run(review({"path": "app.py", "line": 31, "side": "LEFT", "body": "was"}))
    assert left.parsed_data.state == "COMMENTED"
    comments = hub.run(
        lambda c: c.rest.pulls.async_list_review_comments("octo", "home", number)
    ).parsed_data
    first = comments[0]
    assert (first.path, first.line, first.side, first.pull_request_review_id) == (
        "app.py", 31, "RIGHT", made.id,
    )  # fmt: skip
    assert first.diff_hunk.splitlines()[0] == "@@ -28,7 +28,7 @@ line 27"
    assert first.diff_hunk.splitlines()[-1] == "+thirty-one"
    assert first.user.model_dump(include={"login", "type", "id"}) == {
        "login": BOT_LOGIN, "type": "Bot", "id": 9919,
    }  # fmt: skip
    assert [len(r["comments"]) for r in hub.fake.reviews] == [1, 1]

    reply = hub.run(
        lambda c: c.rest.pulls.async_create_reply_for_review_comment(
            "octo", "home", number, first.id, data={"body": "Because."}
        )
    ).parsed_data
    assert (reply.in_reply_to_id, reply.path, reply.line) == (first.id, "app.py", 31)
    assert "in_reply_to_id" not in hub.fake.review_comments[0]


def test_check_runs_are_created_and_completed(hub: Hub) -> None:
    number = a_change(hub)
    head = hub.fake.pulls[(REPO, number)].head_sha

    async def checks(c: GitHub[Any]) -> tuple[Any, Any, Any, int]:
        made = await c.rest.checks.async_create(
            "octo", "home", data={"name": "persais/review", "head_sha": head,
                                  "status": "in_progress"},
        )  # fmt: skip
        run_id = made.parsed_data.id
        try:  # githubkit itself would refuse to send this
            path = f"/repos/octo/home/check-runs/{run_id}"
            await c.arequest("PATCH", path, json={"status": "completed"})
        except RequestFailed as exc:
            refused = exc.response.status_code
        note: Any = {"path": "app.py", "start_line": 3, "end_line": 3,
                "annotation_level": "notice", "message": "renamed"}  # fmt: skip
        done = await c.rest.checks.async_update(
            "octo", "home", run_id, conclusion="neutral",
            output={"title": "2 notes", "summary": "Fine", "annotations": [note]},
        )  # fmt: skip
        listed = await c.rest.checks.async_list_for_ref("octo", "home", "feature")
        return made.parsed_data, done.parsed_data, listed.parsed_data, refused

    made, done, listed, refused = hub.run(checks)
    assert (made.status, made.conclusion, made.head_sha) == ("in_progress", None, head)
    assert made.app is not None
    assert made.app.slug == "persais"
    assert [p.number for p in made.pull_requests] == [number]
    assert refused == 422
    assert (done.status, done.conclusion, done.completed_at is not None) == (
        "completed", "neutral", True,
    )  # fmt: skip
    assert (done.output.title, done.output.annotations_count) == ("2 notes", 1)
    assert [r.id for r in listed.check_runs] == [made.id]
    assert hub.fake.check_runs[0]["_annotations"][0]["message"] == "renamed"


def test_comments_reactions_and_payloads(hub: Hub) -> None:
    number = a_change(hub)
    hub.fake.permissions[(REPO, "ada")] = "write"
    payload = hub.fake.issue_comment_payload(REPO, number, "/persais review", user="ada")
    assert payload["issue"]["number"] == number
    assert payload["issue"]["pull_request"]["url"].endswith(f"/pulls/{number}")
    assert (payload["installation"]["id"], payload["sender"]["login"]) == (77, "ada")
    command = payload["comment"]["id"]

    async def answer(c: GitHub[Any]) -> tuple[list[int], Any]:
        statuses = []
        for _ in range(2):
            reacted = await c.rest.reactions.async_create_for_issue_comment(
                "octo", "home", command, data={"content": "eyes"}
            )
            statuses.append(reacted.status_code)
        said = await c.rest.issues.async_create_comment(
            "octo", "home", number, data={"body": "On it."}
        )
        await c.rest.issues.async_update_comment(
            "octo", "home", said.parsed_data.id, data={"body": "Done."}
        )
        listed = await c.rest.issues.async_list_comments("octo", "home", number)
        return statuses, listed.parsed_data

    statuses, comments = hub.run(answer)
    assert statuses == [201, 200]
    assert [(c.user.login if c.user else None, c.body) for c in comments] == [
        ("ada", "/persais review"), (BOT_LOGIN, "Done."),
    ]  # fmt: skip
    assert [(r["content"], r["_comment_id"]) for r in hub.fake.reactions] == [("eyes", command)]

    inline = hub.fake.review_comment_payload(REPO, number, "fix?", path="app.py", line=3)
    assert inline["comment"]["diff_hunk"].endswith("+three")
    assert inline["pull_request"]["number"] == number
    with pytest.raises(ValueError, match="not in the diff"):
        hub.fake.review_comment_payload(REPO, number, "x", path="app.py", line=20)
    synchronize = hub.fake.pull_request_payload(REPO, number, "synchronize")
    assert synchronize["after"] == hub.fake.pulls[(REPO, number)].head_sha
    assert synchronize["pull_request"]["head"]["ref"] == "feature"


def test_a_squash_merge_moves_the_base_branch(hub: Hub) -> None:
    number = a_change(hub)
    stale = hub.fake.pulls[(REPO, number)].head_sha
    hub.fake.push(REPO, "feature", {"more.txt": "more\n"})
    pull = hub.fake.pulls[(REPO, number)]
    assert pull.head_sha != stale  # the push moved the pull request

    def merge(sha: str) -> Callable[[GitHub[Any]], Coroutine[Any, Any, Any]]:
        return lambda c: c.rest.pulls.async_merge(
            "octo", "home", number, merge_method="squash", sha=sha
        )

    with pytest.raises(RequestFailed) as conflict:
        hub.run(merge(stale))
    assert conflict.value.response.status_code == 409
    merged = hub.run(merge(pull.head_sha)).parsed_data
    assert merged.merged

    git = hub.fake.repos[REPO].git
    assert git.branch("main") == merged.sha
    assert len(git.commits("-1", merged.sha)[0].parents) == 1  # one squashed commit
    assert git.blob("main", "more.txt") is not None
    assert git.blob("main", "old.txt") is None
    after = hub.run(lambda c: c.rest.pulls.async_get("octo", "home", number)).parsed_data
    assert (after.state, after.merged) == ("closed", True)
    assert hub.fake.pulls[(REPO, number)].merge_commit_sha == merged.sha
    assert hub.fake.merges[0]["method"] == "squash"
    with pytest.raises(RequestFailed) as again:
        hub.run(merge(pull.head_sha))
    assert again.value.response.status_code == 405


def test_contents_and_compare_at_a_ref(hub: Hub) -> None:
    a_change(hub)

    async def read(c: GitHub[Any]) -> tuple[Any, Any, int, Any]:
        main = await c.rest.repos.async_get_content("octo", "home", "app.py")
        feature = await c.rest.repos.async_get_content("octo", "home", "app.py", ref="feature")
        try:
            await c.rest.repos.async_get_content("octo", "home", "old.txt", ref="feature")
        except RequestFailed as exc:
            missing = exc.response.status_code
        compared = await c.rest.repos.async_compare_commits("octo", "home", "main...feature")
        return main.parsed_data, feature.parsed_data, missing, compared.parsed_data

    main, feature, missing, compared = hub.run(read)
    assert base64.b64decode(main.content).decode() == numbered(40)
    assert (feature.type, feature.encoding) == ("file", "base64")
    assert base64.b64decode(feature.content).decode().splitlines()[2] == "three"
    assert missing == 404
    assert (compared.status, compared.ahead_by, compared.behind_by) == ("ahead", 1, 0)
    assert [c.commit.message for c in compared.commits] == ["A change"]
    assert len(compared.files or []) == 4


def test_hook_deliveries_are_paged_by_cursor_and_redelivered(hub: Hub) -> None:
    ids = [hub.fake.add_delivery(f"guid-{i}", "issue_comment", action="created",
                                 status_code=500 if i == 2 else 200) for i in range(5)]  # fmt: skip

    async def deliveries() -> tuple[list[Any], str, list[Any], Any]:
        app = hub.github.app
        first = await app.rest.apps.async_list_webhook_deliveries(per_page=2)
        every = [d async for d in app.rest.paginate(app.rest.apps.async_list_webhook_deliveries,
                                                    per_page=2)]  # fmt: skip
        await app.rest.apps.async_redeliver_webhook_delivery(ids[2])
        one = await app.rest.apps.async_get_webhook_delivery(ids[2])
        return first.parsed_data, first.headers["link"], every, one.parsed_data

    first, link, every, one = asyncio.run(deliveries())
    assert [d.id for d in first] == [ids[4], ids[3]]
    assert link == f'<{hub.url}/app/hook/deliveries?cursor=v1_{ids[2]}&per_page=2>; rel="next"'
    assert [d.id for d in every] == ids[::-1]
    assert (one.status, one.status_code, one.guid) == ("Invalid HTTP Response: 500", 500, "guid-2")
    assert hub.fake.redelivered == [ids[2]]


def test_git_over_http_needs_an_installation_token(hub: Hub, tmp_path: Path) -> None:
    number = a_change(hub)
    token = _token(hub)
    basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
    header = ["-c", f"http.extraHeader=Authorization: Basic {basic}"]
    env = git_env(tmp_path)
    remote = f"{hub.url}/octo/home.git"

    def git(*args: str, auth: bool = True, cwd: Path = tmp_path) -> Completed:
        command = ["git", *(header if auth else []), *args]
        return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)

    refused = git("clone", "-q", remote, "anonymous", auth=False)
    assert refused.returncode != 0
    assert "401" in refused.stderr or "Username" in refused.stderr
    work = tmp_path / "work"
    assert git("clone", "-q", "-b", "feature", remote, "work").returncode == 0
    assert (work / "docs" / "notes.md").exists()

    (work / "app.py").write_text(numbered(40, {3: "three", 5: "five"}))
    git("commit", "-qam", "Five", cwd=work)
    before = hub.fake.pulls[(REPO, number)].head_sha
    with receiver() as (hook, got):
        hub.fake.hook_url = hook
        pushed = git("push", "-q", "origin", "feature", cwd=work)
        assert pushed.returncode == 0, pushed.stderr
        local = git("rev-parse", "HEAD", cwd=work).stdout.strip()
        assert hub.fake.pulls[(REPO, number)].head_sha == local  # the push moved the head
        push, synchronize = (r.payload for r in arrived(got, 2))  # by the App's bot
        assert [r.event for r in got] == ["push", "pull_request"]
        assert (push["ref"], push["before"], push["after"], push["forced"]) == (
            "refs/heads/feature", before, local, False,
        )  # fmt: skip
        assert [(c["message"], c["modified"]) for c in push["commits"]] == [("Five", ["app.py"])]
        assert (push["pusher"]["name"], push["sender"]["login"]) == (BOT_LOGIN, BOT_LOGIN)
        assert (synchronize["action"], synchronize["before"], synchronize["after"]) == (
            "synchronize", before, local,
        )  # fmt: skip
        assert synchronize["sender"]["login"] == BOT_LOGIN
        hub.fake.hook_url = None
    assert git("push", "-q", "origin", "feature:other", auth=False, cwd=work).returncode != 0

    hub.fake.push(REPO, "main", {"readme.md": "hi\n"})
    assert git("fetch", "-q", "origin", cwd=work).returncode == 0
    assert git("rev-parse", "origin/main", cwd=work).stdout.strip() == hub.fake.repos[
        REPO
    ].git.branch("main")


def _token(hub: Hub) -> str:
    """An installation token, as the App's client trades its JWT for one."""

    async def fetch() -> str:
        made = await hub.github.app.rest.apps.async_create_installation_access_token(77)
        return made.parsed_data.token

    return asyncio.run(fetch())


# === webhooks the fake delivers itself ===================================================


@dataclass
class Received:
    headers: dict[str, str]  # names in lower case
    body: bytes

    @property
    def event(self) -> str:
        return self.headers["x-github-event"]

    @property
    def guid(self) -> str:
        return self.headers["x-github-delivery"]

    @property
    def payload(self) -> dict[str, Any]:
        found: dict[str, Any] = json.loads(self.body)
        return found


@contextmanager
def receiver(gate: threading.Event | None = None) -> Iterator[tuple[str, list[Received]]]:
    """A webhook endpoint on loopback: its URL and what it received, in order. With a
    `gate`, each request is answered only once the gate is open."""
    got: list[Received] = []

    async def hook(request: web.Request) -> web.Response:
        got.append(Received({k.lower(): v for k, v in request.headers.items()},
                            await request.read()))  # fmt: skip
        if gate is not None:
            await asyncio.to_thread(gate.wait, 10)
        return web.Response(status=202, text="queued")

    app = web.Application()
    app.router.add_post("/webhooks/github", hook)
    with serve(app) as port:
        yield f"http://127.0.0.1:{port}/webhooks/github", got


def arrived(got: list[Received], count: int) -> list[Received]:
    wait_for(lambda: len(got) >= count, 5, f"{count} deliveries")
    return got


def listed(fake: FakeGitHub, count: int) -> list[dict[str, Any]]:
    """The hook's deliveries once `count` attempts are over."""
    wait_for(lambda: len(fake.deliveries) >= count, 15, f"{count} listed deliveries")
    return fake.deliveries


def test_pull_requests_are_delivered_as_github_sends_them(hub: Hub) -> None:
    first = a_change(hub)
    assert hub.fake.deliveries == []  # no hook, nothing delivered
    hub.fake.push(REPO, "second", {"b.txt": "b\n"})
    with receiver() as (url, got):
        hub.fake.hook_url = url
        number = hub.fake.open_pull(REPO, "second", title="Second", user="ada")

        (opened,) = arrived(got, 1)
        assert opened.event == "pull_request"
        assert verify_github(GITHUB_SECRET.encode(), opened.body,
                             opened.headers["x-hub-signature-256"])  # fmt: skip
        assert opened.headers["x-hub-signature-256"] == github_signature(
            GITHUB_SECRET.encode(), opened.body
        )
        assert opened.headers["user-agent"].startswith("GitHub-Hookshot/")
        assert opened.headers["content-type"] == "application/json"
        assert opened.headers["x-github-hook-id"]
        payload = opened.payload
        assert (payload["action"], payload["number"], payload["sender"]["login"]) == (
            "opened", number, "ada",
        )  # fmt: skip
        assert payload["pull_request"]["head"]["ref"] == "second"
        assert (payload["installation"]["id"], payload["repository"]["full_name"]) == (77, REPO)
        (record,) = listed(hub.fake, 1)
        assert (record["guid"], record["event"], record["action"]) == (
            opened.guid, "pull_request", "opened",
        )  # fmt: skip
        assert (record["status_code"], record["status"]) == (202, "OK")
        assert record["repository_id"] == hub.fake.repos[REPO].id

        before = hub.fake.pulls[(REPO, number)].head_sha
        after = hub.fake.push(REPO, "second", {"b.txt": "bb\n"})
        pushed, synchronize = (r.payload for r in arrived(got, 3)[1:3])
        assert (pushed["ref"], pushed["after"]) == ("refs/heads/second", after)
        assert (synchronize["action"], synchronize["before"], synchronize["after"]) == (
            "synchronize", before, after,
        )  # fmt: skip
        assert synchronize["pull_request"]["head"]["sha"] == after

        hub.run(lambda c: c.rest.pulls.async_merge("octo", "home", number, merge_method="squash"))
        merged, main = (r.payload for r in arrived(got, 5)[3:5])
        assert (merged["action"], merged["pull_request"]["merged"]) == ("closed", True)
        assert (main["ref"], main["after"]) == (
            "refs/heads/main",
            hub.fake.repos[REPO].tips["main"],
        )
        assert merged["pull_request"]["merge_commit_sha"] == hub.fake.repos[REPO].git.branch("main")
        assert (merged["sender"]["login"], merged["sender"]["type"]) == (BOT_LOGIN, "Bot")

        hub.run(lambda c: c.rest.pulls.async_update("octo", "home", first, state="closed"))
        closed = arrived(got, 6)[5].payload
        assert (closed["action"], closed["number"]) == ("closed", first)
        assert closed["pull_request"]["merged"] is False

        listed(hub.fake, 6)
        assert [d["guid"] for d in hub.fake.deliveries] == [r.guid for r in got]
        assert [(r.event, r.payload.get("action")) for r in got] == [
            ("pull_request", "opened"), ("push", None), ("pull_request", "synchronize"),
            ("pull_request", "closed"), ("push", None), ("pull_request", "closed"),
        ]  # fmt: skip


def test_comments_are_delivered_the_apps_own_too(hub: Hub) -> None:
    hub.fake.push(REPO, "feature", {"app.py": numbered(40, {3: "three"})})
    gate = threading.Event()
    with receiver(gate) as (url, got):
        hub.fake.hook_url = url
        made = hub.run(
            lambda c: c.rest.pulls.async_create(
                "octo", "home", data={"head": "feature", "base": "main", "title": "By the App"}
            )
        )
        number = made.parsed_data.number
        said = hub.run(
            lambda c: c.rest.issues.async_create_comment(
                "octo", "home", number, data={"body": "On it."}
            )
        ).parsed_data
        # Both answers came while the hook still holds the first delivery.
        assert hub.fake.deliveries == []
        (opened,) = arrived(got, 1)
        gate.set()
        assert (opened.payload["action"], opened.payload["sender"]["type"]) == ("opened", "Bot")

        typed = hub.fake.comment(REPO, number, "/review", user="ada")
        bot, person = arrived(got, 3)[1:3]
        assert (bot.event, bot.payload["action"]) == ("issue_comment", "created")
        assert (bot.payload["comment"]["id"], bot.payload["comment"]["body"]) == (said.id, "On it.")
        assert bot.payload["sender"] == bot.payload["comment"]["user"]
        assert (bot.payload["sender"]["login"], bot.payload["sender"]["type"]) == (BOT_LOGIN, "Bot")
        assert bot.payload["issue"]["pull_request"]["url"].endswith(f"/pulls/{number}")
        assert person.payload == typed
        assert (typed["sender"]["login"], typed["sender"]["type"]) == ("ada", "User")
        assert [c["body"] for c in hub.fake.issue_comments] == ["On it.", "/review"]  # once each
        assert [d["event"] for d in listed(hub.fake, 3)] == [
            "pull_request", "issue_comment", "issue_comment",
        ]  # fmt: skip


def test_a_hook_that_is_down_loses_deliveries_until_they_are_asked_for_again(hub: Hub) -> None:
    number = a_change(hub)
    with receiver() as (url, got):
        hub.fake.hook_url = url
        hub.fake.comment(REPO, number, "one")
        arrived(got, 1)
        listed(hub.fake, 1)
    hub.fake.comment(REPO, number, "two")  # the receiving server is gone: refused
    hub.fake.comment(REPO, number, "three")
    failed = listed(hub.fake, 3)[1:]
    assert [(d["status_code"], d["status"]) for d in failed] == [
        (0, "failed to connect to host"), (0, "failed to connect to host"),
    ]  # fmt: skip
    with receiver() as (url, got):
        hub.fake.hook_url = url
        for body in ("four", "five"):
            hub.fake.comment(REPO, number, body)
        arrived(got, 2)

        async def again() -> Any:
            app = hub.github.app
            await app.rest.apps.async_redeliver_webhook_delivery(failed[0]["id"])
            return (await app.rest.apps.async_get_webhook_delivery(failed[1]["id"])).parsed_data

        lost = asyncio.run(again())
        sent = lost.request.payload.model_dump() if lost.request.payload else {}
        assert (lost.status_code, sent["comment"]["body"]) == (0, "three")
        arrived(got, 3)
        deliveries = listed(hub.fake, 6)
    assert [r.payload["comment"]["body"] for r in got] == ["four", "five", "two"]  # in order
    assert got[2].guid == failed[0]["guid"]  # the same delivery, sent again
    bodies = [(d["_payload"]["comment"]["body"], d["status_code"], d["redelivery"])
              for d in deliveries]  # fmt: skip
    assert bodies == [
        ("one", 202, False), ("two", 0, False), ("three", 0, False),
        ("four", 202, False), ("five", 202, False), ("two", 202, True),
    ]  # fmt: skip


def test_a_merge_through_the_api_delivers_the_default_branchs_push(hub: Hub) -> None:
    number = a_change(hub)
    git = hub.fake.repos[REPO].git
    before, feature = git.branch("main"), hub.fake.pulls[(REPO, number)].head_sha
    assert before is not None
    with receiver() as (url, got):
        hub.fake.hook_url = url
        merged = hub.run(
            lambda c: c.rest.pulls.async_merge("octo", "home", number, merge_method="merge")
        ).parsed_data
        closed, push = arrived(got, 2)
        deliveries = listed(hub.fake, 2)

    assert (closed.event, push.event) == ("pull_request", "push")
    assert push.headers["x-hub-signature-256"] == github_signature(
        GITHUB_SECRET.encode(), push.body
    )
    payload = push.payload
    assert parse_obj("push", payload).after == merged.sha  # githubkit reads it as a push
    assert (payload["ref"], payload["before"], payload["after"]) == (
        "refs/heads/main", before, merged.sha,
    )  # fmt: skip
    assert (payload["created"], payload["deleted"], payload["forced"]) == (False, False, False)
    assert payload["base_ref"] is None
    assert payload["compare"] == f"{hub.url}/{REPO}/compare/{before[:12]}...{merged.sha[:12]}"
    # The pull request's commit came with the merge, but a branch had it already.
    assert [(c["id"], c["distinct"]) for c in payload["commits"]] == [
        (feature, False), (merged.sha, True),
    ]  # fmt: skip
    change, merge = payload["commits"]
    assert (change["message"], change["url"]) == ("A change", f"{hub.url}/{REPO}/commit/{feature}")
    assert (change["author"]["name"], change["committer"]["email"]) == (
        "Persais Fake GitHub", "fake-github@persais.invalid",
    )  # fmt: skip
    assert change["timestamp"]
    # Against the first parent, renames as a removal and an addition, as GitHub lists them.
    assert (merge["added"], merge["removed"], merge["modified"]) == (
        ["docs/notes.md", "logo.png"], ["notes.txt", "old.txt"], ["app.py"],
    )  # fmt: skip
    assert merge["message"].startswith(f"Merge pull request #{number} from octo/feature")
    assert payload["head_commit"] == merge
    repository = payload["repository"]
    assert (repository["default_branch"], repository["master_branch"]) == ("main", "main")
    assert (repository["full_name"], repository["name"], repository["owner"]["login"]) == (
        REPO, "home", "octo",
    )  # fmt: skip
    assert (repository["clone_url"], repository["private"]) == (f"{hub.url}/{REPO}.git", True)
    assert repository["id"] == hub.fake.repos[REPO].id
    assert (payload["pusher"]["name"], payload["sender"]["login"]) == (BOT_LOGIN, BOT_LOGIN)
    assert payload["installation"]["id"] == 77
    assert [(d["event"], d["action"]) for d in deliveries] == [
        ("pull_request", "closed"), ("push", None),
    ]  # fmt: skip


def test_a_push_to_main_and_branches_made_and_deleted_are_delivered(hub: Hub) -> None:
    git = hub.fake.repos[REPO].git
    before = git.branch("main")
    with receiver() as (url, got):
        hub.fake.hook_url = url
        after = hub.fake.push(
            REPO, "main", {"readme.md": "hi\n", "old.txt": None}, message="Readme", sender="ada"
        )
        (main,) = arrived(got, 1)
        topic = hub.fake.push(REPO, "topic", {"t.txt": "t\n"}, message="Topic")
        hub.run(lambda c: c.rest.git.async_delete_ref("octo", "home", "heads/topic"))
        made, deleted = arrived(got, 3)[1:]

    payload = main.payload
    assert main.event == "push"
    assert (payload["ref"], payload["before"], payload["after"], payload["created"]) == (
        "refs/heads/main", before, after, False,
    )  # fmt: skip
    (commit,) = payload["commits"]
    assert (commit["id"], commit["message"], commit["distinct"]) == (after, "Readme", True)
    assert (commit["added"], commit["removed"], commit["modified"]) == (
        ["readme.md"], ["old.txt"], [],
    )  # fmt: skip
    assert payload["head_commit"] == commit
    assert (payload["pusher"]["name"], payload["sender"]["login"]) == ("ada", "ada")

    created = made.payload
    assert (created["ref"], created["before"], created["after"]) == (
        "refs/heads/topic", "0" * 40, topic,
    )  # fmt: skip
    assert (created["created"], created["compare"]) == (True, f"{hub.url}/{REPO}/compare/topic")
    assert [c["message"] for c in created["commits"]] == ["Topic"]  # what main had is not listed
    gone = deleted.payload
    assert (gone["ref"], gone["before"], gone["after"]) == ("refs/heads/topic", topic, "0" * 40)
    assert (gone["deleted"], gone["commits"], gone["head_commit"]) == (True, [], None)
    assert gone["sender"]["login"] == BOT_LOGIN
    for push in (payload, created, gone):
        parse_obj("push", push)


def test_push_payloads_list_the_newest_twenty_commits(hub: Hub) -> None:
    start = hub.fake.repos[REPO].git.branch("main")
    assert start is not None
    shas = [hub.fake.push(REPO, "main", {"n.txt": f"{i}\n"}, message=f"n{i}") for i in range(22)]
    payload = hub.fake.push_payload(REPO, "main", start, shas[-1])
    assert [c["id"] for c in payload["commits"]] == shas[2:]
    assert payload["head_commit"]["id"] == shas[-1]
    assert payload["commits"][0]["modified"] == ["n.txt"]
    assert payload["commits"][0]["added"] == []


def test_a_person_replies_to_the_apps_review_comment(hub: Hub) -> None:
    number = a_change(hub)
    made = hub.run(
        lambda c: c.rest.pulls.async_create_review(
            "octo", "home", number, event="COMMENT", body="Notes",
            comments=[{"path": "app.py", "line": 31, "body": "Why thirty-one?"}],
        )
    ).parsed_data  # fmt: skip
    first = hub.fake.review_comments[0]["id"]
    assert made.id == hub.fake.review_comments[0]["pull_request_review_id"]
    with receiver() as (url, got):
        hub.fake.hook_url = url
        typed = hub.fake.reply_to_review_comment(REPO, number, first, "Because.", "ada")
        again = hub.fake.reply_to_review_comment(REPO, number, typed["comment"]["id"], "Really.")
        delivered, second = arrived(got, 2)

    assert delivered.event == "pull_request_review_comment"
    assert delivered.payload == typed
    event = parse_obj("pull_request_review_comment", typed)
    assert (event.action, event.comment.in_reply_to_id) == ("created", first)
    comment = typed["comment"]
    assert (comment["body"], comment["path"], comment["line"], comment["in_reply_to_id"]) == (
        "Because.", "app.py", 31, first,
    )  # fmt: skip
    assert (comment["user"]["login"], typed["sender"]["login"]) == ("ada", "ada")
    assert typed["pull_request"]["number"] == number
    assert (typed["installation"]["id"], typed["repository"]["full_name"]) == (77, REPO)
    assert second.payload["comment"]["in_reply_to_id"] == first  # a reply to the thread
    assert again["sender"]["login"] == "octocat"
    with pytest.raises(ValueError, match="no review comment"):
        hub.fake.reply_to_review_comment(REPO, number, 999_999, "?")

    async def read(c: GitHub[Any]) -> tuple[Any, Any, int]:
        one = await c.rest.pulls.async_get_review_comment("octo", "home", comment["id"])
        top = await c.rest.pulls.async_get_review_comment("octo", "home", first)
        try:
            await c.rest.pulls.async_get_review_comment("octo", "home", 999_999)
        except RequestFailed as exc:
            missing = exc.response.status_code
        return one.parsed_data, top.parsed_data, missing

    one, top, missing = hub.run(read)
    assert (one.id, one.body, one.path, one.line, one.in_reply_to_id) == (
        comment["id"], "Because.", "app.py", 31, first,
    )  # fmt: skip
    assert one.user is not None
    assert one.user.login == "ada"
    assert one.pull_request_url == f"{hub.url}/repos/{REPO}/pulls/{number}"
    assert one.html_url == f"{hub.url}/{REPO}/pull/{number}#discussion_r{comment['id']}"
    assert top.body == "Why thirty-one?"
    assert "in_reply_to_id" not in top.model_dump(exclude_unset=True)  # GitHub omits it
    assert missing == 404
