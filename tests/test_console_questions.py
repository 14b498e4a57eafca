"""The console's Questions page: open approvals answered through the same machinery as a
chat's buttons (an inbox delivery a worker processes with the same claim and resume), the
first answer winning wherever it comes from, and every surface saying who chose what."""

from __future__ import annotations

import asyncio
import html
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from app.runtime import Runtime
from app.settings import Settings
from app.web.server import create_app
from tests.support.agents import write_agent
from tests.support.config import make_settings
from tests.support.console import BASE, console_client, csrf_of, log_in, mint_link
from tests.support.conversation import ASKER, conversations
from tests.support.deploys import ECHO, mechanic_pull, offer_deploy
from tests.support.fake_telegram import (
    ADA,
    BOT_ID,
    FakeTelegram,
    fake_telegram,
    press_update,
    send,
    text_update,
)
from tests.support.server import client_for, running_server
from tests.support.waiting import wait_for

Sql = Callable[..., list[tuple[Any, ...]]]
ADMIN = 7


@contextmanager
def serving(settings: Settings, database: str) -> Iterator[tuple[TestClient, Runtime]]:
    """The web process as `persais serve --no-worker` builds it (the console with its
    runtime's queue); the test runs the worker's processing of a delivery itself, on the
    app's loop (`client.portal`)."""
    runtime = Runtime(settings, database)
    app = create_app(runtime, database_kind="external", with_worker=False)
    with TestClient(app, base_url=BASE, follow_redirects=False) as client:
        yield client, runtime


def deploy_question(client: TestClient, runtime: Runtime, settings: Settings,
                    user: str = "cli:ada") -> tuple[str, int]:  # fmt: skip
    """A Mechanic pull request on the local forge and its [Deploy] [Abort] question, asked
    in `user`'s chat as the Mechanic asks it: (approval id, pull request number)."""

    async def ask() -> tuple[str, int]:
        convo = await runtime.conversations()
        job, number, _ = await mechanic_pull(convo, settings, ECHO, user=user)
        return await offer_deploy(convo, job, user=user), number

    return client.portal.call(ask)


def process_console_answers(client: TestClient, runtime: Runtime, sql: Sql) -> list[str]:
    """What a worker does with each waiting console answer (the dispatcher's own code)."""
    waiting = sql("SELECT id FROM inbox WHERE source = 'console' AND status = 'received'")
    return [
        client.portal.call(runtime.dispatcher.process, row[0], "test-worker") for row in waiting
    ]


def form_of(html: str, approval_id: str) -> str:
    found = re.search(
        rf'<form class="question" method="post" action="/console/questions/{approval_id}">'
        r"(.*?)</form>", html, re.S,
    )  # fmt: skip
    assert found is not None, f"no form for {approval_id}"
    return found.group(1)


def button(form: str, label: str) -> str:
    found = re.search(rf"<button [^>]*>{label}</button>", form, re.S)
    assert found is not None, f"no {label} button"
    return found.group(0)


def test_open_questions_are_listed_newest_first_with_their_buttons(
    settings: Settings, database: str, sql: Sql
) -> None:
    with serving(settings, database) as (client, runtime):
        older, number = deploy_question(client, runtime, settings)
        sql("INSERT INTO approvals (id, conversation, agent, question, prompt, choices,"
            " requested_by, expires_at) VALUES ('newer1', 'tg:5', 'asker', 'ship:x',"
            " 'Ship <b>x</b>?', '[[\"y\", \"Ship it\"], [\"view\", \"View PR\","
            " \"https://example.com/pr/1\"]]', 'tg:5', now() + interval '1 hour'),"
            " ('gone1', 'tg:5', 'asker', 'ship:y', 'Ship y (expired)?', '[[\"y\", \"Ship it\"]]',"
            " 'tg:5', now() - interval '1 second')")  # fmt: skip
        csrf = log_in(client, database)
        page = client.get("/console/questions")
        assert page.status_code == 200
        shown = page.text
        assert "Open (2)" in shown
        assert shown.index("question-newer1") < shown.index(f"question-{older}")  # newest first
        assert "Ship &lt;b&gt;x&lt;/b&gt;?" in shown  # escaped
        assert "Ship y (expired)?" not in shown  # past its time: not answerable, not listed
        deploy_form = form_of(shown, older)
        assert f'name="csrf" value="{csrf}"' in deploy_form
        deploy = button(deploy_form, "Deploy")
        assert 'name="choice" value="deploy"' in deploy
        assert "data-confirm=" in deploy
        assert "disabled" not in deploy
        abort = button(deploy_form, "Abort")
        assert 'value="abort"' in abort
        assert "data-confirm" not in abort
        for said in ("PR open", "Asked by cli:ada", "mechanic"):
            assert said in shown
        # A link choice is a link, not an answer.
        ship_form = form_of(shown, "newer1")
        assert '<a class="button" href="https://example.com/pr/1">View PR</a>' in ship_form
        assert 'value="view"' not in ship_form
        # Closed: by a choice, from the surface that made it; by the pull request's deploy.
        sql("INSERT INTO approvals (id, conversation, agent, question, prompt, choices,"
            " requested_by, expires_at, status, choice, decided_by, decided_at, decided_via)"
            " VALUES ('done1', 'tg:5', 'asker', 's', 'Ship z?', '[[\"y\", \"Ship it\"]]', 'tg:5',"
            "  now(), 'decided', 'y', 'tg:5', now() - interval '1 minute', 'telegram'),"
            " ('done2', 'cli:ada', 'mechanic', 'pr:j', 'PR open', '[[\"deploy\", \"Deploy\"]]',"
            "  'cli:ada', now(), 'decided', 'deployed', 'cli:ada', now(), NULL)")  # fmt: skip
        closed = client.get("/console/questions").text
        first = re.search(r'<tr id="closed-done1">(.*?)</tr>', closed, re.S)
        assert first is not None
        assert "Ship it</strong> — chosen by tg:5" in first.group(1)
        assert "Telegram" in first.group(1)
        second = re.search(r'<tr id="closed-done2">(.*?)</tr>', closed, re.S)
        assert second is not None
        assert "deployed</strong> — chosen by cli:ada" in second.group(1)
        assert "the pull request" in second.group(1)
        assert closed.index("closed-done2") < closed.index("closed-done1")  # newest first
        assert number > 0


def test_an_admins_deploy_from_the_console_is_decided_resumed_and_told_in_the_chat(
    settings: Settings, database: str, sql: Sql
) -> None:
    with serving(settings, database) as (client, runtime):
        question, number = deploy_question(client, runtime, settings)
        csrf = log_in(client, database, "cli:ada", "admin")
        sent = client.post(f"/console/questions/{question}",
                           data={"csrf": csrf, "choice": "deploy"})  # fmt: skip
        assert sent.status_code == 303
        assert sent.headers["location"] == f"/console/questions?answered={question}"
        # Stored as a delivery, with its job queued, and not yet decided.
        ((event, payload, status),) = sql(
            "SELECT event, payload, status FROM inbox WHERE source = 'console'"
        )
        assert (event, status) == ("answer", "received")
        assert payload == {"approval": question, "choice": "deploy", "person": "cli:ada",
                           "admin": True}  # fmt: skip
        assert sql("SELECT count(*) FROM procrastinate_jobs WHERE task_name ="
                   " 'persais.process_delivery' AND status = 'todo'") == [(1,)]  # fmt: skip
        waiting = client.get(sent.headers["location"])
        assert "is on its way" in waiting.text
        assert "chosen by" not in waiting.text

        assert process_console_answers(client, runtime, sql) == ["processed"]

        decided = sql(
            "SELECT status, choice, decided_by, decided_by_admin, decided_via,"
            " delivered_at IS NOT NULL FROM approvals WHERE id = %s",
            question,
        )
        assert decided == [("decided", "deploy", "cli:ada", True, "console", True)]
        # The Mechanic heard it: the deploy is queued, and the chat is told, both where the
        # question was asked (a terminal keeps no message to edit: a line of its own).
        said = [row[0] for row in sql(
            "SELECT text FROM outbox WHERE conversation = 'cli:ada' ORDER BY id")]  # fmt: skip
        assert "✅ Deploy — chosen by cli:ada in the console." in said
        assert f"🚀 Deploying pull request #{number}…" in said
        assert sql("SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'persais.deploy'"
                   " AND args->>'subject' = %s", str(number)) == [(1,)]  # fmt: skip
        # Audited as the chat's press is, with the console as the surface.
        assert sql("SELECT actor, detail->>'choice', detail->>'via' FROM audit_log"
                   " WHERE action = 'approval.decided' AND subject = %s",
                   f"approval:{question}") == [("cli:ada", "deploy", "console")]  # fmt: skip
        page = client.get(f"/console/questions?answered={question}")
        assert f"Deploy — chosen by cli:ada (question {question})" in page.text
        assert "Open (0)" in page.text
        closed = re.search(rf'<tr id="closed-{question}">(.*?)</tr>', page.text, re.S)
        assert closed is not None
        assert "chosen by cli:ada" in closed.group(1)
        assert "the console" in closed.group(1)
        # A late press in the chat is told who chose.
        late = client.portal.call(_press, runtime, question, "abort", "cli:ada")
        assert late == "Already answered: Deploy by cli:ada."


async def _press(runtime: Runtime, question: str, choice: str, user: str,
                 admin: bool = False) -> str:  # fmt: skip
    """A button pressed in the chat (`persais chat` presses through the orchestrator)."""
    orchestrator = (await runtime.conversations()).orchestrator
    return (await orchestrator.press(question, choice, user=user, admin=admin)).notice


def test_the_first_answer_wins_wherever_it_comes_from(
    settings: Settings, database: str, sql: Sql
) -> None:
    with serving(settings, database) as (client, runtime):
        first, _ = deploy_question(client, runtime, settings)
        second, _ = deploy_question(client, runtime, settings)
        csrf = log_in(client, database, "cli:bob", "admin")
        # The chat first: the console is told who chose, and nothing is stored.
        assert client.portal.call(_press, runtime, first, "abort", "cli:ada") == "Abort — noted."
        late = client.post(f"/console/questions/{first}", data={"csrf": csrf, "choice": "deploy"})
        assert late.status_code == 303
        told = client.get(late.headers["location"]).text
        assert f"Already chosen: Abort by cli:ada from persais chat (question {first})" in told
        assert sql("SELECT count(*) FROM inbox WHERE source = 'console'") == [(0,)]
        # A race: the console's answer is stored, the chat's press lands before a worker
        # takes it; the worker's claim finds the question decided and changes nothing.
        sent = client.post(f"/console/questions/{second}", data={"csrf": csrf, "choice": "deploy"})
        assert sent.status_code == 303
        assert client.portal.call(_press, runtime, second, "abort", "cli:ada") == "Abort — noted."
        assert process_console_answers(client, runtime, sql) == ["processed"]
        assert sql("SELECT choice, decided_by, decided_via FROM approvals WHERE id = %s",
                   second) == [("abort", "cli:ada", "terminal")]  # fmt: skip
        told = client.get(sent.headers["location"]).text
        assert f"Already chosen: Abort by cli:ada from persais chat (question {second})" in told
        assert "your answer changed nothing" in told
        assert sql("SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'persais.deploy'"
                   ) == [(0,)]  # fmt: skip
        assert sql("SELECT count(*) FROM outbox WHERE key LIKE 'decided:%%'") == [(0,)]
        # The console first: the chat's press is told who chose.
        third, _ = deploy_question(client, runtime, settings)
        client.post(f"/console/questions/{third}", data={"csrf": csrf, "choice": "abort"})
        assert process_console_answers(client, runtime, sql) == ["processed"]
        late_press = client.portal.call(_press, runtime, third, "deploy", "cli:ada")
        assert late_press == "Already answered: Abort by cli:bob."


def test_a_reader_sees_the_questions_but_may_not_answer(
    settings: Settings, database: str, sql: Sql
) -> None:
    with serving(settings, database) as (client, runtime):
        question, _ = deploy_question(client, runtime, settings)
        csrf = log_in(client, database, "cli:rita", "reader")
        page = client.get("/console/questions")
        assert page.status_code == 200
        assert "PR open" in page.text
        assert "only\nan admin may answer them here" in page.text
        deploy = button(form_of(page.text, question), "Deploy")
        assert "disabled" in deploy
        assert 'aria-describedby="reader-note"' in deploy
        refused = client.post(f"/console/questions/{question}",
                              data={"csrf": csrf, "choice": "deploy"})  # fmt: skip
        assert refused.status_code == 403
        assert "Only an admin may answer questions here." in refused.text
    assert sql("SELECT count(*) FROM inbox") == [(0,)]
    assert sql("SELECT status FROM approvals WHERE id = %s", question) == [("pending",)]
    refusals = sql(
        "SELECT actor, detail->>'via' FROM audit_log"
        " WHERE action = 'approval.refused' AND subject = %s",
        f"approval:{question}",
    )
    assert refusals == [("cli:rita", "console")]


def test_a_stranger_gets_the_login_page_and_no_question_text(
    settings: Settings, database: str, sql: Sql
) -> None:
    sql("INSERT INTO approvals (id, conversation, agent, question, prompt, choices, requested_by,"
        " expires_at) VALUES ('q1', 'tg:1', 'mechanic', 'pr:j1', 'Deploy secret-agent?',"
        " '[[\"deploy\", \"Deploy\"]]', 'tg:1', now() + interval '1 hour')")  # fmt: skip
    with console_client(settings, database) as client:
        for answer in (
            client.get("/console/questions"),
            client.get("/console/questions/live"),
            client.post("/console/questions/q1", data={"csrf": "x", "choice": "deploy"}),
        ):
            assert answer.status_code == 401
            assert "secret-agent" not in answer.text
            assert "q1" not in answer.text
    assert sql("SELECT count(*) FROM inbox") == [(0,)]
    assert sql("SELECT status FROM approvals") == [("pending",)]


def test_an_answer_without_the_csrf_token_is_refused(
    settings: Settings, database: str, sql: Sql
) -> None:
    with serving(settings, database) as (client, runtime):
        question, _ = deploy_question(client, runtime, settings)
        log_in(client, database)
        missing = client.post(f"/console/questions/{question}", data={"choice": "deploy"})
        assert missing.status_code == 403
        wrong = client.post(f"/console/questions/{question}",
                            data={"csrf": "guess", "choice": "deploy"})  # fmt: skip
        assert wrong.status_code == 403
    assert sql("SELECT count(*) FROM inbox") == [(0,)]
    assert sql("SELECT status FROM approvals WHERE id = %s", question) == [("pending",)]


def test_unknown_expired_and_forged_answers_are_refused_with_a_clear_message(
    settings: Settings, database: str, sql: Sql
) -> None:
    with serving(settings, database) as (client, runtime):
        question, _ = deploy_question(client, runtime, settings)
        sql("INSERT INTO approvals (id, conversation, agent, question, prompt, choices,"
            " requested_by, expires_at, status) VALUES"
            " ('late1', 'tg:5', 'asker', 's', 'Late?', '[[\"y\", \"Yes\"]]', 'tg:5',"
            "  now() - interval '1 second', 'pending'),"
            " ('late2', 'tg:5', 'asker', 's', 'Later?', '[[\"y\", \"Yes\"]]', 'tg:5',"
            "  now() - interval '1 hour', 'expired'),"
            " ('link1', 'tg:5', 'asker', 's', 'Look?', '[[\"y\", \"Yes\"],"
            "  [\"view\", \"View PR\", \"https://example.com/1\"]]', 'tg:5',"
            "  now() + interval '1 hour', 'pending')")  # fmt: skip
        csrf = log_in(client, database)

        def answer(approval: str, choice: str) -> httpx.Response:
            return client.post(f"/console/questions/{approval}",
                               data={"csrf": csrf, "choice": choice})  # fmt: skip

        unknown = answer("nosuchq", "deploy")
        assert unknown.status_code == 404
        assert "Question nosuchq is not known." in unknown.text
        for late in ("late1", "late2"):
            expired = answer(late, "y")
            assert expired.status_code == 410
            assert f"Question {late} has expired; it can no longer be answered." in expired.text
        forged = answer(question, "merge-everything")
        assert forged.status_code == 400
        said = html.unescape(forged.text)
        assert f"“merge-everything” is not one of question {question}'s choices." in said
        assert answer("link1", "view").status_code == 400  # a link decides nothing
        assert answer(question, "").status_code == 400
    assert sql("SELECT count(*) FROM inbox") == [(0,)]
    assert sql("SELECT status FROM approvals WHERE id = %s", question) == [("pending",)]


def test_a_console_delivery_that_names_no_question_is_dropped_not_retried(
    settings: Settings, database: str, sql: Sql
) -> None:
    with serving(settings, database) as (client, runtime):
        sql("INSERT INTO inbox (source, delivery_id, event, payload) VALUES"
            " ('console', 'answer:x', 'answer', '{\"choice\": \"deploy\"}')")  # fmt: skip
        ((inbox_id,),) = sql("SELECT id FROM inbox")
        assert client.portal.call(runtime.dispatcher.process, inbox_id, "w") == "ignored"


def test_the_live_fragment_swaps_only_when_the_lists_change(
    settings: Settings, database: str, sql: Sql
) -> None:
    with serving(settings, database) as (client, runtime):
        question, _ = deploy_question(client, runtime, settings)
        log_in(client, database)
        page = client.get("/console/questions").text
        found = re.search(r'hx-get="(/console/questions/live\?seen=[0-9a-f]+)"', page)
        assert found is not None
        assert 'hx-trigger="every 3s"' in page
        assert client.get(found.group(1)).status_code == 204  # nothing changed
        client.portal.call(_press, runtime, question, "deploy", "cli:ada")
        fresh = client.get(found.group(1))
        assert fresh.status_code == 200
        assert "<html" not in fresh.text  # the fragment alone
        assert "Open (0)" in fresh.text
        assert "chosen by cli:ada" in fresh.text
        assert "persais chat" in fresh.text
        # After an answer in the console the fragment carries its status line along: "on its
        # way" until a worker has taken it, then who chose.
        other, _ = deploy_question(client, runtime, settings)
        csrf = csrf_of(client.get("/console/questions").text)
        sent = client.post(f"/console/questions/{other}", data={"csrf": csrf, "choice": "deploy"})
        waiting = client.get(sent.headers["location"]).text
        assert "is on its way" in waiting
        polled = re.search(r'hx-get="(/console/questions/live\?[^"]+)"', waiting)
        assert polled is not None
        url = html.unescape(polled.group(1))
        assert f"answered={other}" in url
        assert client.get(url).status_code == 204
        assert process_console_answers(client, runtime, sql) == ["processed"]
        taken = client.get(url)
        assert taken.status_code == 200
        assert f"Deploy — chosen by cli:ada (question {other})." in taken.text
        assert "is on its way" not in taken.text


# --- Telegram: a question asked in a chat, answered in the console -------------------------


@pytest.fixture
def telegram() -> Iterator[tuple[str, FakeTelegram]]:
    with fake_telegram(BOT_ID) as (url, fake):
        yield url, fake


def test_a_telegram_question_answered_in_the_console_shows_who_chose_in_the_chat(
    tmp_path: Path, database: str, sql: Sql, telegram: tuple[str, FakeTelegram]
) -> None:
    """`persais serve` as a process runs it: the console's answer goes through the inbox to
    the worker, the question's message in Telegram is edited to say who chose, the agent's
    answer follows in the chat, and a late press of the old button is told who chose."""
    url, fake = telegram
    agents = tmp_path / "agents"
    write_agent(agents, "asker", ASKER)
    settings = make_settings(
        tmp_path / "home", database, TELEGRAM_API_URL=url, PERSAIS_AGENTS_DIR=str(agents),
        PERSAIS_TELEGRAM_ALLOWED_USERS=str(ADA), PERSAIS_TELEGRAM_ADMINS=str(ADMIN),
    )  # fmt: skip
    with running_server(settings, database) as (base, _), client_for(base) as client:
        send(client, text_update(ADA, "/asker rocket"))
        wait_for(lambda: any("Ship rocket?" in t for t in fake.texts(ADA)), 30, "the question")
        ((question, ref),) = wait_for(
            lambda: sql("SELECT id, channel_ref FROM approvals WHERE channel_ref IS NOT NULL"),
            30, "the question's message remembered",
        )  # fmt: skip
        assert client.get(f"/console/login/{mint_link(database, 'cli:ada')}").status_code == 303
        page = client.get("/console/questions")
        assert page.status_code == 200
        assert "Ship rocket?" in page.text
        answered = client.post(f"/console/questions/{question}",
                               data={"csrf": csrf_of(page.text), "choice": "y"})  # fmt: skip
        assert answered.status_code == 303
        edits = wait_for(lambda: fake.sent("editMessageText"), 30, "the question edited")
        assert edits[0]["message_id"] in (ref["message_id"], str(ref["message_id"]))
        assert "✅ Ship it — chosen by cli:ada" in edits[0]["text"]
        wait_for(lambda: "ship:rocket -> shipped" in fake.texts(ADA), 30, "the agent's answer")
        shown = wait_for(
            lambda: "chosen by cli:ada" in (p := client.get(answered.headers["location"]).text)
            and p, 10, "the page says who chose",
        )  # fmt: skip
        assert "Ship it — chosen by cli:ada" in shown
        send(client, press_update(ADA, f"ap:{question}:n", message_id=int(ref["message_id"])))
        notices = wait_for(lambda: fake.sent("answerCallbackQuery"), 30, "the late press")
        assert notices[0]["text"] == "Already answered: Ship it by cli:ada."
    assert sql("SELECT status, processed_by IS NOT NULL FROM inbox WHERE source = 'console'") == [
        ("processed", True)
    ]
    assert sql("SELECT decided_via FROM approvals") == [("console",)]


@pytest.mark.slow  # a whole deploy (about a minute on a loaded machine)
def test_deploy_pressed_in_the_console_of_a_running_server_puts_the_pull_request_live(
    settings: Settings, database: str, sql: Sql
) -> None:
    """The browser test's step, without the browser: `persais serve` (web and worker in one
    process) takes the console's Deploy, and the release goes live."""

    async def ask() -> tuple[str, int]:
        async with conversations(settings, database) as convo:  # the chat's own process
            job, number, _ = await mechanic_pull(convo, settings, ECHO)
            return await offer_deploy(convo, job), number

    question, number = asyncio.run(ask())
    with running_server(settings, database) as (base, _), client_for(base) as client:
        assert client.get(f"/console/login/{mint_link(database)}").status_code == 303
        page = client.get("/console/questions")
        assert "Deploy" in button(form_of(page.text, question), "Deploy")
        sent = client.post(f"/console/questions/{question}",
                           data={"csrf": csrf_of(page.text), "choice": "deploy"})  # fmt: skip
        assert sent.status_code == 303
        wait_for(lambda: "chosen by cli:ada" in client.get(sent.headers["location"]).text, 30,
                 "the page says who chose")  # fmt: skip
        live = "SELECT text FROM outbox WHERE conversation = 'cli:ada' AND key LIKE 'deploy:%%'"
        wait_for(lambda: any("is live" in row[0] for row in sql(live)), 120, "the release live")
    said = [row[0] for row in sql("SELECT text FROM outbox WHERE conversation = 'cli:ada'")]
    assert f"🚀 Deploying pull request #{number}…" in said
