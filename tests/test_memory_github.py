"""Memory through the GitHub App, on the real server with the fake GitHub delivering its own
webhooks: a reply disputing a review comment becomes a lesson for that file, the lesson is in
the next review prompt of that file and not of another; a push to the default branch of a
repository whose `.github/persais.yml` enables memory indexes it; `/ask` in a comment answers
from the index of the repository it is asked in, and only that one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.fake_github import BOT_LOGIN
from tests.support.fake_telegram import BOT_ID, fake_telegram
from tests.support.scripted_llm import scripted_llm
from tests.support.server import running_server
from tests.support.waiting import wait_for
from tests.test_github_commands import PUBLIC, REPO, fake_github, gh_settings

pytestmark = pytest.mark.slow
LESSON = "os.sep is what this module wants on every platform"


def answer(*findings: dict[str, Any]) -> str:
    return json.dumps({"summary": "Checked.", "findings": list(findings)})


def system_prompts(llm: Any) -> list[str]:
    """The reviews' system prompts (not the descriptions' that follow each review)."""
    return [
        r["messages"][0]["content"]
        for r in llm.requests
        if r["messages"][0]["role"] == "system"
        and "You describe one pull request" not in r["messages"][0]["content"]
    ]


def test_a_disputed_review_comment_teaches_the_next_review_of_that_file(
    tmp_path: Path, database: str, sql: Any
) -> None:
    finding = answer({"path": "app/a.py", "line": 2, "severity": "warning",
                      "message": "Use os.path.join instead of os.sep."})  # fmt: skip
    replies = [finding, *[answer()] * 5]  # each review is followed by its description
    with (
        fake_github(PUBLIC) as (gh, fake), fake_telegram(BOT_ID) as (tg, _),
        scripted_llm(replies) as (api, llm),
    ):  # fmt: skip
        fake.add_repo(REPO, 77, files={"README.md": "# widgets\n"})
        fake.permissions[(REPO, "ada")] = "write"
        fake.permissions[(REPO, "reader")] = "read"
        settings = gh_settings(tmp_path, database, gh, tg, LLM_API_BASE=api, LLM_API_KEY="k",
                               LLM_MODEL="scripted")  # fmt: skip
        with running_server(settings, database) as (url, _):
            fake.hook_url = f"{url}/webhooks/github"
            fake.push(REPO, "feature", {"app/a.py": "import os\nSEP = os.sep\n"})
            first = fake.open_pull(REPO, "feature", title="Add a", user="ada")
            wait_for(lambda: fake.reviews, 60, "the first review")
            (bot_comment,) = [c for c in fake.review_comments if c["line"] == 2]
            assert bot_comment["user"]["login"] == BOT_LOGIN
            assert LESSON not in "".join(system_prompts(llm))

            # Someone who may not write disputes it: nothing is learnt.
            fake.reply_to_review_comment(REPO, first, bot_comment["id"],
                                         "That's wrong, whatever.", "reader")  # fmt: skip
            # A writer disputes it: a lesson for app/a.py, and a reply in the thread.
            fake.reply_to_review_comment(REPO, first, bot_comment["id"],
                                         f"That's wrong because {LESSON}.", "ada")  # fmt: skip
            wait_for(lambda: sql("SELECT count(*) FROM lessons") == [(1,)], 30, "the lesson")
            ((text, paths, source, by),) = sql(
                "SELECT text, paths, source, created_by FROM lessons"
            )
            assert (paths, source, by) == (["app/a.py"], "dispute", "github:ada")
            assert LESSON in text
            assert "Use os.path.join" in text
            wait_for(lambda: any("noted as lesson #1" in c["body"] for c in fake.review_comments),
                     30, "the thanks in the review thread")  # fmt: skip

            # The next pull request touching app/a.py: its review prompt has the lesson.
            fake.push(REPO, "more", {"app/a.py": "import os\nSEP = os.sep\nEND = 1\n"})
            fake.open_pull(REPO, "more", title="More a", user="ada")
            wait_for(lambda: len(system_prompts(llm)) >= 2, 60, "the second review")
            assert LESSON in system_prompts(llm)[-1]
            # One touching only another file: no lesson in its prompt.
            fake.push(REPO, "docs", {"docs/b.md": "# b\n\nSome words.\n"})
            fake.open_pull(REPO, "docs", title="Docs", user="ada")
            wait_for(lambda: len(system_prompts(llm)) >= 3, 60, "the third review")
            assert len(system_prompts(llm)) == 3
            assert LESSON not in system_prompts(llm)[-1]
        actions = [a for (a,) in sql("SELECT action FROM audit_log WHERE action = 'memory.lesson'")]
        assert actions == ["memory.lesson"]


def test_ask_in_a_comment_and_pushes_that_move_an_enabled_repository_index(
    tmp_path: Path, database: str, sql: Any
) -> None:
    with fake_github(PUBLIC) as (gh, fake), fake_telegram(BOT_ID) as (tg, _):
        enabled = {"README.md": "# widgets\n", ".github/persais.yml": "memory:\n  index: true\n"}
        fake.add_repo(REPO, 77, files=enabled)
        fake.add_repo("octo/plain", 77, files={"README.md": "# plain\n"})
        fake.permissions[(REPO, "ada")] = "write"
        fake.permissions[("octo/plain", "ada")] = "write"
        settings = gh_settings(tmp_path, database, gh, tg)
        with running_server(settings, database) as (url, _):
            fake.hook_url = f"{url}/webhooks/github"
            # The home repository (here the local forge's Persais) is indexed at the start.
            wait_for(lambda: sql("SELECT status FROM memory_repositories"
                                 " WHERE repository = 'persais'") == [("ready",)],
                     60, "the home index")  # fmt: skip
            # /ask answers from the index of the repository it is asked in, never another's
            # (the home repository's code does not go into octo/plain's threads).
            plain = fake.open_issue("octo/plain")
            fake.comment("octo/plain", plain, "/ask How is a GitHub webhook signature verified?",
                         user="ada", on_pull=False)  # fmt: skip
            wait_for(lambda: any("octo/plain is not indexed" in c["body"]
                                 for c in fake.issue_comments), 60, "the refusal")  # fmt: skip

            # Pushes to the default branch: indexed where memory is on, not elsewhere.
            fake.push(REPO, "main", {"app/widget.py": "def spin() -> int:\n    return 1\n"})
            fake.push("octo/plain", "main", {"app/plain.py": "X = 1\n"})
            fake.push(REPO, "topic", {"app/topic.py": "Y = 2\n"})  # not the default branch
            query = "SELECT status FROM memory_repositories WHERE repository = %s"
            wait_for(lambda: sql(query, REPO) == [("ready",)], 60, "the enabled repo's index")
            files = {p for (p,) in sql("SELECT path FROM memory_files WHERE repository = %s",
                                       REPO)}  # fmt: skip
            assert files == {"README.md", ".github/persais.yml", "app/widget.py"}
            assert sql("SELECT symbol FROM memory_chunks WHERE path = 'app/widget.py'") == [
                ("spin",)
            ]
            number = fake.open_issue(REPO)
            fake.comment(REPO, number, "/ask What does spin return?", user="ada",
                         on_pull=False)  # fmt: skip
            wait_for(lambda: any(f"From the index of {REPO}" in c["body"]
                                 for c in fake.issue_comments), 60, "the answer")  # fmt: skip
            answer_ = next(c["body"] for c in fake.issue_comments if "From the index" in c["body"])
            (commit,) = sql("SELECT commit FROM memory_repositories WHERE repository = %s", REPO)
            assert f"/{REPO}/blob/{commit[0]}/app/widget.py#L1-L2" in answer_
            assert "persais" not in answer_.replace(f"From the index of {REPO}", "")
        assert sql("SELECT count(*) FROM memory_repositories WHERE repository = 'octo/plain'") == [
            (0,)
        ]
