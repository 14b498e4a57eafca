"""Questions about a Mechanic pull request: closed, saying what happened, once it is
deployed; and one [Deploy] per pull request per chat when the asker's chat is the admin
chat (the job's result and the admin notice)."""

from __future__ import annotations

import asyncio
import io
import secrets
from pathlib import Path
from typing import Any

from app.channels.terminal import TerminalChat
from app.github.notices import ChatNotices
from app.orchestrator import approvals
from app.orchestrator.orchestrator import Orchestrator
from app.settings import Settings
from tests.support.config import make_settings
from tests.support.deploys import ECHO, mechanic_pull, offer_deploy, outcome, persais, say
from tests.support.fake_github import APP_ID, app_key_pair, fake_github
from tests.support.fake_telegram import ADA

PRIVATE, PUBLIC = app_key_pair()
HOME = "octo/persais"


def test_after_deploy_n_its_questions_close_say_who_and_are_not_offered_again(
    settings: Settings, database: str
) -> None:
    async def deploy() -> tuple[int, str, str]:
        async with persais(settings, database) as convo:
            job, number, _ = await mechanic_pull(convo, settings, ECHO)
            mine = await offer_deploy(convo, job)  # the job's result in the asker's chat
            admins = await offer_deploy(convo, job, user="tg:7")  # the admin notice
            assert await say(convo, f"/deploy {number}") == [
                f"🚀 Deploying pull request #{number}…"
            ]
            assert "is live" in await outcome(convo)
            async with convo.pool.connection() as conn:
                for question in (mine, admins):
                    closed = await approvals.get(conn, question)
                    assert closed is not None
                    assert (closed.status, closed.choice, closed.decided_by) == (
                        "decided", "deployed", "cli:ada",
                    )  # fmt: skip
                cur = await conn.execute(
                    "SELECT conversation, text FROM outbox WHERE key LIKE 'closed:%%' ORDER BY id"
                )
                told = await cur.fetchall()
            said = f"Pull request #{number} deployed by cli:ada."
            assert [c for c, _ in told] == ["cli:ada", "tg:7"]
            assert all(said in text for _, text in told)
            # A late press of the old [Deploy] says what happened instead of deploying.
            late = await convo.orchestrator.press(mine, "deploy", user="cli:ada", admin=False)
            assert not late.ok
            assert late.notice == "Already answered: deployed by cli:ada."
            return number, mine, said

    async def chat_start() -> str:
        async with persais(settings, database) as convo:  # a restart, then a chat start
            out = io.StringIO()
            chat = TerminalChat(convo.orchestrator, "ada", out, deployments=convo.deployments)

            async def end_of_input() -> str:
                return ""

            await chat.run(end_of_input)
            return out.getvalue()

    _, _, said = asyncio.run(deploy())
    shown = asyncio.run(chat_start())
    assert said in shown  # told, once, what became of the question
    assert "PR open" not in shown  # not offered again
    assert "[1] Deploy" not in shown


def gh_settings(tmp_path: Path, database: str, github: str) -> Settings:
    return make_settings(
        tmp_path / "home", database, GITHUB_APP_ID=APP_ID, GITHUB_PRIVATE_KEY=PRIVATE,
        GITHUB_API_URL=github, TELEGRAM_API_URL="http://127.0.0.1:9", PERSAIS_HOME_REPO=HOME,
        PERSAIS_TELEGRAM_ADMINS=str(ADA), PERSAIS_TELEGRAM_ALLOWED_USERS=str(ADA),
    )  # fmt: skip


def test_a_mechanic_pull_request_asked_for_in_the_admin_chat_gets_one_deploy(
    tmp_path: Path, database: str, sql: Any
) -> None:
    admin_chat = f"tg:{ADA}"
    with fake_github(PUBLIC) as (gh, fake):
        fake.add_repo(HOME, 77, files={"README.md": "# persais\n"})
        settings = gh_settings(tmp_path, database, gh)

        def pull_request(job: str) -> tuple[int, dict[str, Any]]:
            fake.push(HOME, f"mechanic/{job}", {"dynamic/agents/echo/README.md": job})
            number = fake.open_pull(HOME, f"mechanic/{job}", title=f"Mechanic {job}")
            sql("INSERT INTO jobs (id, conversation, requested_by, request, status, branch,"
                " pr_number, pr_url, head_sha, message) VALUES (%s, %s, %s, 'test', 'opened',"
                " %s, %s, %s, %s, 'Opened')",
                job, admin_chat, admin_chat, f"mechanic/{job}", number,
                f"{gh}/{HOME}/pull/{number}", fake.pulls[(HOME, number)].head_sha)  # fmt: skip
            return number, fake.pull_request_payload(HOME, number, "opened")["pull_request"]

        async def run() -> None:
            async with persais(settings, database) as convo:

                async def orchestrator() -> Orchestrator:
                    return convo.orchestrator

                notices = ChatNotices(settings, convo.pool, orchestrator)
                assert notices.conversation == admin_chat
                # The job's result first, then GitHub's notice of the pull request.
                first = secrets.token_hex(4)
                _, pull = pull_request(first)
                job = await convo.mechanic.job(first)
                assert job is not None
                await convo.mechanic.runner._announce(job)
                await notices.pull_request("opened", pull, HOME, f"d-{first}")
                # The notice first, then the job's result.
                second = secrets.token_hex(4)
                _, pull = pull_request(second)
                await notices.pull_request("opened", pull, HOME, f"d-{second}")
                job = await convo.mechanic.job(second)
                assert job is not None
                await convo.mechanic.runner._announce(job)
                # Closed on GitHub by a person: its question closes, saying so; the other
                # pull request's stays. The App's own merge (a Deploy's) closes nothing.
                closed = {**pull, "state": "closed", "merged": False}
                await notices.pull_request("closed", closed, HOME, f"c-{second}", "")
                async with convo.pool.connection() as conn:
                    assert len(await approvals.pending_in(conn, admin_chat)) == 2
                await notices.pull_request("closed", closed, HOME, f"c-{second}", "ada")
                async with convo.pool.connection() as conn:
                    (still,) = await approvals.pending_in(conn, admin_chat)
                assert still.question == f"pr:{first}"

        asyncio.run(run())
    jobs = [row[0] for row in sql("SELECT id FROM jobs ORDER BY created_at")]
    assert len(jobs) == 2
    for job in jobs:
        asked = sql("SELECT count(*) FROM approvals WHERE conversation = %s AND question = %s",
                    admin_chat, f"pr:{job}")  # fmt: skip
        assert asked == [(1,)], job
    # Both messages were said; only one of each pair carries the question.
    rows = sql("SELECT approval IS NOT NULL FROM outbox WHERE conversation = %s"
               " AND (key IS NULL OR key NOT LIKE 'closed:%%') ORDER BY id",
               admin_chat)  # fmt: skip
    assert sorted(r[0] for r in rows) == [False, False, True, True]
    (told,) = sql("SELECT text FROM outbox WHERE key LIKE 'closed:%%'")
    assert "closed by github:ada." in told[0]
