"""`/fix` (or a reply that is only 🔧) in the thread of a Persais review comment, against the
fake GitHub's real bare repositories: the suggestion lands as exactly one commit by the App
on the pull request's branch (read back with git), a fork gets a patch `git apply` takes,
and a reader, a stale comment, a moved head, a person's comment, a comment without a
suggestion and a redelivered request push nothing."""

from __future__ import annotations

import asyncio
import re
import subprocess
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from app.github.client import GitHubApp
from app.github.service import GitHubService
from app.mechanic_jobs.service import MechanicJobs
from app.review.compose import Comment
from app.review.fixes import replace_lines, suggestions_in, unified_diff
from app.review.pull import PullOnGitHub
from app.routing import Event
from app.settings import Settings, load_settings
from app.worker.queue import DeliveryQueue
from tests.support.fake_github import APP_ID, BOT_LOGIN, FakeGitHub, fake_github
from tests.support.fake_github_contents import on_ref_update, open_fork_pull
from tests.support.fake_github_repos import git_env
from tests.support.pools import open_pool
from tests.test_github_review import INSTALLATION, PRIVATE, PUBLIC, REPO, review_once

GREET = 'NAME = "x"\ngreeting = f"hello"\nEND = 1\n'  # ruff F541, fixed on line 2
FIXED = 'NAME = "x"\ngreeting = "hello"\nEND = 1\n'
FILES: dict[str, str | bytes] = {"README.md": "# widgets\n"}
WRENCH = "\N{WRENCH}\N{VARIATION SELECTOR-16}"


def settings_for(url: str) -> Settings:
    return load_settings(None, GITHUB_APP_ID=APP_ID, GITHUB_PRIVATE_KEY=PRIVATE,
                         GITHUB_API_URL=url)  # fmt: skip


async def _no_conversations() -> Any:
    raise AssertionError("a /fix needs no conversation")


def on_comment(database: str, url: str, payload: dict[str, Any], *, delivery: str = "") -> str:
    """The worker's handling of one comment delivery, through the real GitHubService."""
    name = "issue_comment" if "issue" in payload else "pull_request_review_comment"
    event = Event("github", name, "created", delivery or str(uuid.uuid4()), payload)

    async def body() -> str:
        settings = settings_for(url)
        async with open_pool(database, max_size=4) as pool:
            service = GitHubService(settings, pool, _no_conversations, app=GitHubApp(settings))
            return await service.on_comment(event)

    return asyncio.run(body())


def reviewed_pull(database: str, url: str, fake: FakeGitHub) -> tuple[int, dict[str, Any]]:
    """A pull request adding app/greet.py, reviewed: ruff's F541 with its suggestion."""
    fake.add_repo(REPO, INSTALLATION, files=FILES)
    fake.permissions[(REPO, "ada")] = "write"
    fake.push(REPO, "feature", {"app/greet.py": GREET})
    number = fake.open_pull(REPO, "feature")
    assert review_once(database, url, fake, number).status == "posted"
    (finding,) = [c for c in fake.review_comments if "F541" in c["body"]]
    assert (finding["line"], finding["user"]["login"]) == (2, BOT_LOGIN)
    assert '```suggestion\ngreeting = "hello"\n```' in finding["body"]
    return number, finding


def thread_replies(fake: FakeGitHub, comment_id: int) -> list[str]:
    return [
        c["body"] for c in fake.review_comments
        if c.get("in_reply_to_id") == comment_id and c["user"]["login"] == BOT_LOGIN
    ]  # fmt: skip


def fix_audit(sql: Any) -> list[tuple[str, str | None]]:
    return [
        (a, r)
        for a, r in sql(
            "SELECT action, detail->>'reason' FROM audit_log WHERE action LIKE 'review.fix%' "
            "ORDER BY id"
        )
    ]


@pytest.mark.parametrize("ask", ["/fix", WRENCH])
def test_a_writer_s_fix_pushes_one_commit_by_the_app(
    database: str, sql: Any, ask: str
) -> None:  # fmt: skip
    with fake_github(PUBLIC) as (url, fake):
        number, finding = reviewed_pull(database, url, fake)
        git = fake.repos[REPO].git
        before = git.branch("feature")
        assert before is not None
        request = fake.reply_to_review_comment(REPO, number, finding["id"], ask, "ada")
        delivery = str(uuid.uuid4())
        assert on_comment(database, url, request, delivery=delivery) == "fix: pushed"

        head = git.branch("feature")
        assert head is not None
        assert git.text("rev-list", f"{before}..{head}").split() == [head]  # one commit
        assert git.text("rev-parse", f"{head}^") == before
        assert git.text("diff", "--name-only", before, head) == "app/greet.py"
        assert git.blob(head, "app/greet.py") is not None
        assert git.blob(head, "app/greet.py")[1].decode() == FIXED  # type: ignore[index]
        log = git.text("log", "-1", "--format=%an|%ae|%s", head)
        assert log == (
            f"{BOT_LOGIN}|9919+{BOT_LOGIN}@users.noreply.github.com|"
            "Apply Persais suggestion on app/greet.py:2 (requested by @ada)"
        )
        assert fake.pulls[(REPO, number)].head_sha == head
        (said,) = thread_replies(fake, finding["id"])
        assert f"/{REPO}/commit/{head})" in said

        # The same delivery again (a retry), and the same comment through a redelivery:
        # nothing more is pushed or said.
        assert on_comment(database, url, request, delivery=delivery) == "fix: handled before"
        assert on_comment(database, url, request) == "fix: handled before"
        assert git.branch("feature") == head
        assert len(thread_replies(fake, finding["id"])) == 1
    assert fix_audit(sql) == [("review.fix_pushed", None)]
    (commit,) = sql("SELECT detail->>'commit' FROM audit_log WHERE action = 'review.fix_pushed'")
    assert commit == (head,)


def test_a_multi_line_suggestion_replaces_its_lines_at_the_current_head(database: str) -> None:
    with fake_github(PUBLIC) as (url, fake):
        fake.add_repo(REPO, INSTALLATION, files=FILES)
        fake.permissions[(REPO, "ada")] = "write"
        text = "".join(f"row_{i} = {i}\n" for i in range(1, 9))
        fake.push(REPO, "feature", {"app/rows.py": text})
        number = fake.open_pull(REPO, "feature")
        body = "⚠️ **warning** (review): three rows are one\n\n```suggestion\nROWS = (3, 4, 5)\n```"

        async def post() -> None:
            settings = settings_for(url)
            client = GitHubApp(settings).installation(INSTALLATION)
            head = fake.pulls[(REPO, number)].head_sha
            pull = PullOnGitHub(client, REPO, number, head)
            await pull.post_review(
                "Checked.", [Comment("app/rows.py", 5, body, "fp", "warning", 3)]
            )

        asyncio.run(post())
        (comment,) = fake.review_comments
        assert (comment["start_line"], comment["line"]) == (3, 5)
        # Another push, elsewhere in the branch: the suggestion still applies, on top of it.
        pushed = fake.push(REPO, "feature", {"app/other.py": "OTHER = 1\n"})
        request = fake.reply_to_review_comment(REPO, number, comment["id"], "/fix", "ada")
        assert on_comment(database, url, request) == "fix: pushed"
        git = fake.repos[REPO].git
        head = git.branch("feature")
        assert git.text("rev-parse", f"{head}^") == pushed
        lines = text.splitlines()
        expected = "\n".join([*lines[:2], "ROWS = (3, 4, 5)", *lines[5:]]) + "\n"
        assert git.blob(str(head), "app/rows.py")[1].decode() == expected  # type: ignore[index]
        assert "app/rows.py:3-5" in git.text("log", "-1", "--format=%s", str(head))


def test_a_reader_is_refused_and_nothing_is_pushed(database: str, sql: Any) -> None:
    with fake_github(PUBLIC) as (url, fake):
        number, finding = reviewed_pull(database, url, fake)
        fake.permissions[(REPO, "reader")] = "read"
        before = fake.repos[REPO].git.branch("feature")
        request = fake.reply_to_review_comment(REPO, number, finding["id"], "/fix", "reader")
        assert on_comment(database, url, request) == "refused"
        assert fake.repos[REPO].git.branch("feature") == before
        assert not fake.calls_to("/git/")
        assert thread_replies(fake, finding["id"]) == []
        assert any("only people who may write" in c["body"] for c in fake.issue_comments)
    assert fix_audit(sql) == []
    assert sql("SELECT count(*) FROM audit_log WHERE action = 'github.command_refused'") == [(1,)]


def test_a_fork_gets_a_patch_that_git_applies(database: str, sql: Any, tmp_path: Path) -> None:
    with fake_github(PUBLIC) as (url, fake):
        fake.add_repo(REPO, INSTALLATION, files=FILES)
        fake.permissions[(REPO, "ada")] = "write"
        number = open_fork_pull(fake, REPO, "stranger", "patch-1", {"app/greet.py": GREET})
        pull = fake._pull_json(fake.repos[REPO], fake.pulls[(REPO, number)])
        assert pull["head"]["repo"]["full_name"] == "stranger/widgets"
        assert review_once(database, url, fake, number).status == "posted"
        (finding,) = [c for c in fake.review_comments if "F541" in c["body"]]
        git = fake.repos[REPO].git
        refs = git.text("for-each-ref")
        request = fake.reply_to_review_comment(REPO, number, finding["id"], "/fix", "ada")
        assert on_comment(database, url, request) == "fix: patch"
        assert git.text("for-each-ref") == refs  # nothing pushed anywhere
        assert not [c for c in fake.calls_to("/git/") if c.method != "GET"]
        (said,) = thread_replies(fake, finding["id"])
        assert "fork" in said
        assert "git apply" in said
        match = re.search(r"```diff\n(.*?)```", said, re.S)
        assert match is not None
        # The patch, applied with git to a checkout of the fork's head, makes the fix.
        work = tmp_path / "fork"
        env = git_env(fake.home)
        head = fake.pulls[(REPO, number)].head_sha
        subprocess.run(["git", "--git-dir", str(git.path), "worktree", "add", "-q", "--detach",
                        str(work), head], env=env, check=True)  # fmt: skip
        (work / "persais.patch").write_text(match.group(1))
        subprocess.run(["git", "-C", str(work), "apply", "persais.patch"], env=env, check=True)
        assert (work / "app/greet.py").read_text() == FIXED
    assert fix_audit(sql)[0][0] == "review.fix_patch"


def test_a_stale_comment_is_refused(database: str, sql: Any) -> None:
    with fake_github(PUBLIC) as (url, fake):
        number, finding = reviewed_pull(database, url, fake)
        moved = fake.push(REPO, "feature", {"app/greet.py": GREET.replace("hello", "hi")})
        request = fake.reply_to_review_comment(REPO, number, finding["id"], "/fix", "ada")
        assert on_comment(database, url, request) == "fix: refused"
        assert fake.repos[REPO].git.branch("feature") == moved
        (said,) = thread_replies(fake, finding["id"])
        assert "stale" in said
    assert fix_audit(sql) == [("review.fix_refused", "stale")]


def test_a_head_that_moves_while_applying_is_not_overwritten(database: str, sql: Any) -> None:
    with fake_github(PUBLIC) as (url, fake):
        number, finding = reviewed_pull(database, url, fake)
        pushed: list[str] = []

        def someone_pushes(branch: str) -> None:
            pushed.append(fake.push(REPO, branch, {"app/late.py": "LATE = 1\n"}))

        request = fake.reply_to_review_comment(REPO, number, finding["id"], "/fix", "ada")
        with on_ref_update(fake, someone_pushes):
            assert on_comment(database, url, request) == "fix: refused"
        git = fake.repos[REPO].git
        assert git.branch("feature") == pushed[0]  # their push stands, ours never landed
        assert git.blob(pushed[0], "app/greet.py")[1].decode() == GREET  # type: ignore[index]
        (said,) = thread_replies(fake, finding["id"])
        assert "moved" in said
    assert fix_audit(sql) == [("review.fix_refused", "head moved")]


def test_a_person_s_comment_one_without_a_suggestion_and_a_fix_outside_a_thread(
    database: str, sql: Any
) -> None:
    with fake_github(PUBLIC) as (url, fake):
        fake.add_repo(REPO, INSTALLATION, files=FILES)
        fake.permissions[(REPO, "ada")] = "write"
        fake.push(REPO, "feature", {"app/a.py": "x = undefined_name\n", "app/b.py": "B = 1\n"})
        number = fake.open_pull(REPO, "feature")
        assert review_once(database, url, fake, number).status == "posted"
        (undefined,) = [c for c in fake.review_comments if "F821" in c["body"]]
        assert "```suggestion" not in undefined["body"]
        person = fake.review_comment_payload(
            REPO, number, "Rename it?\n\n```suggestion\nB = 2\n```", path="app/b.py", line=1,
            user="ada",
        )  # fmt: skip
        before = fake.repos[REPO].git.branch("feature")

        ask = fake.reply_to_review_comment(REPO, number, undefined["id"], "/fix", "ada")
        assert on_comment(database, url, ask) == "fix: refused"
        assert (
            "No suggestion here; `/fix` on a home-repository pull request asks the Mechanic"
            in thread_replies(fake, undefined["id"])[0]
        )  # this is not the home repository
        ask = fake.reply_to_review_comment(REPO, number, person["comment"]["id"], WRENCH, "ada")
        assert on_comment(database, url, ask) == "fix: refused"
        assert "not Persais's" in thread_replies(fake, person["comment"]["id"])[0]
        outside = fake.issue_comment_payload(REPO, number, "/fix", user="ada")
        assert on_comment(database, url, outside) == "fix: refused"
        assert "works as a reply in the thread" in fake.issue_comments[-1]["body"]
        assert fake.repos[REPO].git.branch("feature") == before
    assert fix_audit(sql) == [
        ("review.fix_refused", "no suggestion"),
        ("review.fix_refused", "not Persais's comment"),
        ("review.fix_refused", "not in a review thread"),
    ]


def test_a_finding_without_a_suggestion_on_the_home_repository_goes_to_the_mechanic(
    database: str, sql: Any
) -> None:
    """ "Or has the Mechanic make the change": a `/mechanic fix` job on the pull request's
    branch, queued in the real job queue, with the finding (never its hidden fingerprint)
    as the request."""
    with fake_github(PUBLIC) as (url, fake):
        fake.add_repo(REPO, INSTALLATION, files=FILES)
        fake.permissions[(REPO, "ada")] = "write"
        fake.push(REPO, "feature", {"app/a.py": "x = undefined_name\n"})
        number = fake.open_pull(REPO, "feature")
        assert review_once(database, url, fake, number).status == "posted"
        (undefined,) = [c for c in fake.review_comments if "F821" in c["body"]]
        ask = fake.reply_to_review_comment(REPO, number, undefined["id"], "/fix", "ada")
        event = Event("github", "pull_request_review_comment", "created", "d-1", ask)
        settings = load_settings(
            None, GITHUB_APP_ID=APP_ID, GITHUB_PRIVATE_KEY=PRIVATE, GITHUB_API_URL=url,
            PERSAIS_HOME_REPO=REPO, LLM_API_KEY="sk-test", LLM_API_BASE="http://127.0.0.1:9",
        )  # fmt: skip

        async def body() -> str:
            async with open_pool(database, max_size=4) as pool:
                queue = DeliveryQueue(max_attempts=1, retry_base_seconds=0)
                await queue.open(pool)
                jobs = MechanicJobs(settings, pool, defer=queue.defer_mechanic, ask=_no_asking)

                async def conversations() -> Any:
                    return SimpleNamespace(mechanic=jobs)

                try:
                    service = GitHubService(settings, pool, conversations, app=GitHubApp(settings))
                    return await service.on_comment(event)
                finally:
                    await queue.close()

        assert asyncio.run(body()) == "fix: mechanic"
        (reply,) = thread_replies(fake, undefined["id"])
        assert "the Mechanic makes the change" in reply
    ((job, kind, target, request, conversation),) = sql(
        "SELECT id, kind, target_pr, request, conversation FROM jobs"
    )
    assert (kind, target, conversation) == ("fix", number, f"gh:{REPO}#{number}")
    assert request.startswith("Fix the problem an automated review reported at app/a.py:1")
    assert "\n> " in request  # quoted: a description, not instructions
    assert "F821" in request
    assert "persais:fp" not in request  # the hidden fingerprint is not a request
    assert f"`{job}`" in reply
    assert sql("SELECT count(*) FROM procrastinate_jobs WHERE task_name LIKE '%mechanic%'") == [
        (1,)
    ]
    assert fix_audit(sql) == [("review.fix_mechanic", None)]


async def _no_asking(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("queuing a fix job asks nobody")


# --- the pure parts -----------------------------------------------------------------------


def test_suggestions_as_github_reads_them() -> None:
    assert suggestions_in("x\n\n```suggestion\na = 1\n```") == {"a = 1"}
    assert suggestions_in("```suggestion\n\n```") == {""}  # Persais's deletion
    assert suggestions_in("```suggestion\n```") == {""}  # GitHub's
    assert suggestions_in("```suggestion\r\na\r\nb\r\n```\r\n<!-- fp -->") == {"a\nb"}
    assert suggestions_in("```python\na = 1\n```") == set()
    assert suggestions_in("```suggestion\na\n```\n\n```suggestion\nb\n```") == {"a", "b"}
    assert replace_lines("a\nb\nc\n", 2, 2, "") == "a\nc\n"
    assert replace_lines("a\r\nb\r\nc", 2, 3, "x\ny") == "a\r\nx\r\ny"
    assert replace_lines("a\r\nb\r\nc\r\n", 1, 1, "x") == "x\r\nb\r\nc\r\n"
    assert replace_lines("a\nb", 2, 2, "z") == "a\nz"
    patch = unified_diff("f.py", "a\nb", "a\nc")
    assert patch.endswith("+c\n\\ No newline at end of file\n")
