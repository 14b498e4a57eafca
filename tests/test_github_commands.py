"""The GitHub App through `POST /webhooks/github` on the real server, with the fake GitHub
(real bare repositories) and the fake Telegram: reviews on pull request events, commands in
comments only from people who may write, the App's own comments ignored, news in the admin
chat, and the Mechanic asked from a comment opening its pull request through the App."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.settings import CHECKOUT_ROOT, Settings
from tests.support.config import make_settings
from tests.support.fake_github import APP_ID, BOT_LOGIN, FakeGitHub, app_key_pair, fake_github
from tests.support.fake_telegram import ADA, BOT_ID, FakeTelegram, fake_telegram
from tests.support.mechanic import PLAN, REQUEST, echo_reply
from tests.support.scripted_llm import scripted_llm
from tests.support.server import client_for, running_server
from tests.support.waiting import wait_for
from tests.support.webhooks import post_github

PRIVATE, PUBLIC = app_key_pair()
REPO = "octo/widgets"


def gh_settings(
    tmp_path: Path, database: str, github: str, telegram: str, **extra: Any
) -> Settings:
    return make_settings(
        tmp_path / "home", database, GITHUB_APP_ID=APP_ID, GITHUB_PRIVATE_KEY=PRIVATE,
        GITHUB_API_URL=github, TELEGRAM_API_URL=telegram, PERSAIS_TELEGRAM_ADMINS=str(ADA),
        PERSAIS_TELEGRAM_ALLOWED_USERS=str(ADA), PERSAIS_AGENTS_DIR=str(tmp_path / "agents"),
        **extra,
    )  # fmt: skip


def deliver(client: httpx.Client, event: str, payload: dict[str, Any]) -> str:
    delivery = str(uuid.uuid4())
    response = post_github(client, event, payload, delivery=delivery)
    assert response.status_code == 202, response.text
    return delivery


def processed(sql: Any, delivery: str) -> bool:
    rows = sql("SELECT status FROM inbox WHERE delivery_id = %s", delivery)
    return bool(rows) and rows[0][0] in ("processed", "ignored")


def reactions_on(fake: FakeGitHub, comment_id: int) -> list[str]:
    return [r["content"] for r in fake.reactions if r["_comment_id"] == comment_id]


def buttons(params: dict[str, Any]) -> list[dict[str, Any]]:
    markup = params.get("reply_markup") or {}
    return [b for row in markup.get("inline_keyboard", []) for b in row]


def test_reviews_commands_refusals_and_news(tmp_path: Path, database: str, sql: Any) -> None:
    with fake_github(PUBLIC) as (gh, fake), fake_telegram(BOT_ID) as (tg, telegram):
        fake.add_repo(REPO, 77, files={"README.md": "# widgets\n"})
        fake.permissions[(REPO, "ada")] = "write"
        fake.permissions[(REPO, "reader")] = "read"
        # Custom roles: GitHub names them in role_name; permission gives their base.
        fake.custom_roles.update({"releaser": "write", "auditor": "read"})
        fake.permissions[(REPO, "rel")] = "releaser"
        fake.permissions[(REPO, "aud")] = "auditor"
        fake.push(REPO, "feature", {"app/a.py": "import os\n"})
        number = fake.open_pull(REPO, "feature", title="Add a", user="ada")
        settings = gh_settings(tmp_path, database, gh, tg)
        with running_server(settings, database) as (url, _), client_for(url) as client:
            # A new pull request: reviewed, with its check run; the admin chat hears of it.
            deliver(client, "pull_request", fake.pull_request_payload(REPO, number, "opened"))
            wait_for(lambda: fake.reviews, 60, "the review")
            wait_for(lambda: fake.check_runs and fake.check_runs[0]["status"] == "completed",
                     30, "the check run concluded")  # fmt: skip
            assert [(c["path"], c["line"]) for c in fake.reviews[0]["comments"]] == [
                ("app/a.py", 1)
            ]

            def news() -> list[dict[str, Any]]:
                return [p for p in telegram.sent() if int(p["chat_id"]) == ADA]

            wait_for(lambda: len(news()) >= 2, 30, "news of the pull request and its review")
            opened = next(p for p in news() if p["text"].startswith("🆕 New pull request"))
            (view,) = buttons(opened)
            assert view["text"] == "View PR"
            assert view["url"].endswith(f"/{REPO}/pull/{number}")
            assert any(p["text"].startswith("⚠️ Reviewed") for p in news())

            # /help from a writer: 👀 and the list.
            help_ = fake.issue_comment_payload(REPO, number, "/help", user="ada")
            deliver(client, "issue_comment", help_)
            wait_for(lambda: any("/mechanic fix" in c["body"] for c in fake.issue_comments),
                     30, "the help")  # fmt: skip
            assert reactions_on(fake, help_["comment"]["id"]) == ["eyes"]

            # A reader's /mechanic: one polite refusal, audited, nothing started.
            refused = fake.issue_comment_payload(REPO, number, f"/mechanic {REQUEST}",
                                                 user="reader")  # fmt: skip
            deliver(client, "issue_comment", refused)
            wait_for(lambda: any("Sorry @reader" in c["body"] for c in fake.issue_comments), 30)
            assert reactions_on(fake, refused["comment"]["id"]) == []
            assert sql("SELECT count(*) FROM jobs") == [(0,)]
            audit = sql("SELECT actor, detail->>'command' FROM audit_log"
                        " WHERE action = 'github.command_refused'")  # fmt: skip
            assert audit == [("github:reader", "mechanic")]
            # Asked again the same day: refused quietly (no second comment, no audit row).
            again_refused = fake.issue_comment_payload(REPO, number, "/help", user="reader")
            quiet = deliver(client, "issue_comment", again_refused)
            wait_for(lambda: processed(sql, quiet), 30)
            sorry = [c for c in fake.issue_comments if "Sorry @reader" in c["body"]]
            assert len(sorry) == 1
            assert sql("SELECT refused FROM refusals WHERE who = %s",
                       f"github:reader@{REPO}") == [(2,)]  # fmt: skip

            # A custom role with read access: refused like a reader.
            custom_read = fake.issue_comment_payload(REPO, number, "/review", user="aud")
            deliver(client, "issue_comment", custom_read)
            wait_for(lambda: any("Sorry @aud" in c["body"] for c in fake.issue_comments), 30)
            assert reactions_on(fake, custom_read["comment"]["id"]) == []

            # The App's own comment, and another bot's, are never commands (no loops).
            own = fake.issue_comment_payload(REPO, number, "/review", user=BOT_LOGIN,
                                             user_type="Bot")  # fmt: skip
            other = fake.issue_comment_payload(REPO, number, "/help", user="dependabot[bot]",
                                               user_type="Bot")  # fmt: skip
            ignored = [deliver(client, "issue_comment", p) for p in (own, other)]
            wait_for(lambda: all(processed(sql, d) for d in ignored), 30)
            assert reactions_on(fake, own["comment"]["id"]) == []
            assert reactions_on(fake, other["comment"]["id"]) == []
            assert len(fake.reviews) == 1

            # /review in a review comment from a custom role with write access: reviewed
            # again, nothing repeated.
            again = fake.review_comment_payload(REPO, number, "/review", path="app/a.py",
                                                line=1, user="rel")  # fmt: skip
            deliver(client, "pull_request_review_comment", again)
            bot_reviews = lambda: [r for r in fake.reviews if r["user"]["login"] == BOT_LOGIN]  # noqa: E731
            wait_for(lambda: len(bot_reviews()) == 2, 60, "the second review")
            assert bot_reviews()[1]["comments"] == []  # said before: not repeated
            assert "already said earlier" in bot_reviews()[1]["body"]
            assert reactions_on(fake, again["comment"]["id"]) == ["eyes"]

            # Merged: the chat hears of it.
            fake.pulls[(REPO, number)].state = "closed"
            fake.pulls[(REPO, number)].merged = True
            deliver(client, "pull_request", fake.pull_request_payload(REPO, number, "closed"))
            wait_for(lambda: any(p["text"].startswith("🔀 Merged") for p in news()), 30)
        commands = sql("SELECT actor, detail->>'command' FROM audit_log"
                       " WHERE action = 'github.command' ORDER BY id")  # fmt: skip
        assert commands == [("github:ada", "help"), ("github:rel", "review")]
        refusals = sql("SELECT actor FROM audit_log WHERE action = 'github.command_refused'"
                       " ORDER BY id")  # fmt: skip
        assert refusals == [("github:reader",), ("github:aud",)]


@pytest.mark.slow
def test_mechanic_from_a_comment_opens_its_pull_request_through_the_app(
    tmp_path: Path, database: str, sql: Any
) -> None:
    home = "octo/persais"
    script = [
        json.dumps(PLAN), echo_reply('f"Echo: {message.text}"'),  # the job: plan, Aider
        '{"summary": "Fine.", "findings": []}',  # the review of its pull request
        echo_reply('f"Echo: {message.text.strip()}"'),  # /mechanic fix: Aider on the branch
    ]  # fmt: skip
    with (
        fake_github(PUBLIC) as (gh, fake),
        fake_telegram(BOT_ID) as (tg, telegram),
        scripted_llm(script) as (llm, _),
    ):
        fake.add_repo(home, 77, source=CHECKOUT_ROOT)
        fake.permissions[(home, "ada")] = "admin"
        fake.push(home, "docs", {"docs/idea.md": "An idea.\n"})
        issue = fake.open_pull(home, "docs", title="Ideas")
        settings = gh_settings(
            tmp_path, database, gh, tg, PERSAIS_HOME_REPO=home, LLM_API_BASE=llm,
            LLM_API_KEY="sk-gh-test", LLM_MODEL="scripted",
        )  # fmt: skip
        with running_server(settings, database) as (url, _), client_for(url) as client:
            asked = fake.issue_comment_payload(home, issue, f"/mechanic {REQUEST}", user="ada")
            deliver(client, "issue_comment", asked)

            def mechanic_pulls() -> list[Any]:
                return [p for (full, _), p in fake.pulls.items()
                        if full == home and p.head.startswith("mechanic/")]  # fmt: skip

            (pull,) = wait_for(mechanic_pulls, 240, "the Mechanic's pull request on GitHub")
            tree = fake.repos[home].git.blob(pull.head_sha, "dynamic/agents/echo/agent.py")
            assert tree is not None
            assert b"Echo: {message.text}" in tree[1]

            def thread() -> list[str]:
                return [c["body"] for c in fake.issue_comments if c["_number"] == issue]

            wait_for(lambda: any(f"/pull/{pull.number}" in b for b in thread()), 60,
                     "the result in the same thread")  # fmt: skip
            progress = [b for b in thread() if b.startswith("🔧 Mechanic job")]
            assert len(progress) == 1  # one progress comment, edited in place
            result = next(b for b in thread() if f"/pull/{pull.number}" in b)
            assert "[View PR](" in result
            assert reactions_on(fake, asked["comment"]["id"]) == ["eyes"]

            # GitHub tells us of the new pull request: reviewed like any other, and the admin
            # chat gets [Deploy] [View PR] for it.
            deliver(client, "pull_request", fake.pull_request_payload(home, pull.number, "opened"))
            wait_for(lambda: any(r["commit_id"] == pull.head_sha for r in fake.reviews), 60)

            def deploy_offer(sent: FakeTelegram) -> list[dict[str, Any]]:
                return [p for p in sent.sent() if [b["text"] for b in buttons(p)]
                        == ["Deploy", "View PR"]]  # fmt: skip

            (offer,) = wait_for(lambda: deploy_offer(telegram), 30, "[Deploy] in the chat")
            assert f"{home}#{pull.number}" in offer["text"]

            # /mechanic fix on that pull request: Aider on its branch, validated, pushed back.
            before = pull.head_sha
            fix = fake.issue_comment_payload(home, pull.number, "/mechanic fix strip the "
                                             "message before echoing it", user="ada")  # fmt: skip
            deliver(client, "issue_comment", fix)
            wait_for(lambda: pull.head_sha != before, 240, "the fix pushed to the branch")
            fixed = fake.repos[home].git.blob(pull.head_sha, "dynamic/agents/echo/agent.py")
            assert fixed is not None
            assert b"message.text.strip()" in fixed[1]
            commits = fake.repos[home].git.commits(f"{before}..{pull.head_sha}")
            assert len(commits) == 1  # one commit on top: nothing rewritten
            wait_for(lambda: any(f"Pushed {pull.head_sha[:7]}" in c["body"]
                                 for c in fake.issue_comments if c["_number"] == pull.number),
                     60, "the fix told in the pull request's thread")  # fmt: skip
        calls = [c for c in fake.calls if "/access_tokens" in c.path]
        assert len(calls) == 1  # one installation token, cached, for the API and for git
    for call in telegram.calls:
        assert "sk-gh-test" not in str(call.params)
    jobs = sql("SELECT kind, status, pr_number FROM jobs ORDER BY created_at")
    assert jobs == [("create", "opened", pull.number), ("fix", "opened", pull.number)]
