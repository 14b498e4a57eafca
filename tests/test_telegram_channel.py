"""Telegram end to end: raw updates posted to our webhook, aiogram pointed at a local Bot API."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from app import outbox
from app.runtime import Runtime
from app.settings import Settings
from app.telegram.handlers.access import REFUSAL
from tests.support.agents import write_agent
from tests.support.config import make_settings
from tests.support.conversation import ASKER
from tests.support.fake_telegram import (
    ADA,
    BEN,
    BOT_ID,
    FakeTelegram,
    fake_telegram,
    press_update,
    send,
    text_update,
)
from tests.support.server import client_for, running_server
from tests.support.waiting import wait_for

ADMIN, STRANGER = 7, 666
LONG = """
from app.agents.base import Agent, AgentContext, Message, Reply


class Long(Agent):
    async def handle(self, message: Message, ctx: AgentContext) -> Reply | str:
        return "\\n".join(f"line {n:04d} " + "x" * 40 for n in range(100))
"""


@pytest.fixture
def telegram() -> Iterator[tuple[str, FakeTelegram]]:
    with fake_telegram(BOT_ID) as (url, fake):
        yield url, fake


@pytest.fixture
def tg_settings(tmp_path: Path, database: str, telegram: tuple[str, FakeTelegram]) -> Settings:
    agents = tmp_path / "agents"
    write_agent(agents, "echo")
    write_agent(agents, "asker", ASKER)
    write_agent(agents, "long", LONG)
    write_agent(agents, "broken", "def oops(:\n")
    return make_settings(
        tmp_path / "home", database,
        TELEGRAM_API_URL=telegram[0], PERSAIS_AGENTS_DIR=str(agents),
        PERSAIS_TELEGRAM_ALLOWED_USERS=f"{ADA},{BEN}", PERSAIS_TELEGRAM_ADMINS=str(ADMIN),
    )  # fmt: skip


@contextmanager
def persais(settings: Settings, database: str) -> Iterator[httpx.Client]:
    with running_server(settings, database) as (url, _), client_for(url) as client:
        yield client


def replies(fake: FakeTelegram, chat: int, count: int) -> list[str]:
    wait_for(lambda: len(fake.texts(chat)) >= count, 30, f"{count} messages to {chat}")
    return fake.texts(chat)


def test_a_stranger_gets_one_refusal_a_day_and_nothing_runs(
    tg_settings: Settings, database: str, telegram, sql
) -> None:
    _, fake = telegram
    audited = "SELECT detail->>'refused_quietly' FROM audit_log WHERE action = 'refused.stranger'"
    with persais(tg_settings, database) as client:
        # 50 messages and a press: one refusal in the chat, one audit row; the press is
        # answered (a button spins until it is) but is not audited again.
        for n in range(50):
            send(client, text_update(STRANGER, f"/mechanic delete everything {n}"))
        send(client, press_update(STRANGER, "ap:whatever:y", chat=STRANGER))
        wait_for(lambda: sql("SELECT refused FROM refusals") == [(51,)], 60, "51 refused")
        wait_for(lambda: fake.sent("answerCallbackQuery"), 30)
        assert fake.texts(STRANGER) == [REFUSAL]
        assert sql(audited) == [("0",)]
        # The next day (the window moved back a day): one more refusal, and its audit row
        # counts the 50 refused quietly since the first.
        sql("UPDATE refusals SET since = since - interval '1 day'")
        send(client, text_update(STRANGER, "hello?"))
        assert replies(fake, STRANGER, 2) == [REFUSAL, REFUSAL]
        wait_for(lambda: len(sql(audited)) == 2, 30, "the second audit row")
    (answer,) = fake.sent("answerCallbackQuery")
    assert answer["text"] == REFUSAL
    assert answer["show_alert"] in (True, "true")
    assert fake.texts(STRANGER) == [REFUSAL, REFUSAL]
    assert sql("SELECT count(*) FROM conversations") == [(0,)]
    assert sql(audited + " ORDER BY id") == [("0",), ("50",)]
    assert sql("SELECT DISTINCT actor FROM audit_log WHERE action = 'refused.stranger'") == [
        (f"tg:{STRANGER}",)
    ]


def test_modes_survive_a_restart_and_broken_agents_stay_out_of_the_way(
    tg_settings: Settings, database: str, telegram
) -> None:
    _, fake = telegram
    with persais(tg_settings, database) as client:
        send(client, text_update(ADA, "/echo"))
        assert "now talking to echo" in replies(fake, ADA, 1)[0]
        send(client, text_update(ADA, "/agents"))
        assert "broken: syntax error in agent.py line 1" in replies(fake, ADA, 2)[1]
    with persais(tg_settings, database) as client:  # a new process, the same database
        send(client, text_update(ADA, "still echoing?"))
        assert replies(fake, ADA, 3)[2] == "Echo: still echoing?"


def test_an_approval_survives_a_restart_first_press_wins_and_strangers_are_told(
    tg_settings: Settings, database: str, telegram, sql
) -> None:
    _, fake = telegram
    with persais(tg_settings, database) as client:
        send(client, text_update(ADA, "/asker v2"))
        assert replies(fake, ADA, 1) == ["Ship v2?"]
    question = fake.sent()[0]
    buttons = question["reply_markup"]["inline_keyboard"][0]
    assert [b["text"] for b in buttons] == ["Ship it", "Not now"]
    data = buttons[0]["callback_data"]
    assert len(data.encode()) <= 64
    approval_id = data.split(":")[1]

    with persais(tg_settings, database) as client:  # after a restart
        send(client, press_update(BEN, data))  # allowed, but neither asker nor admin
        wait_for(lambda: len(fake.sent("answerCallbackQuery")) == 1, 30)
        send(client, press_update(ADA, data))
        assert replies(fake, ADA, 2)[1] == "ship:v2 -> shipped"
        send(client, press_update(ADMIN, data.rsplit(":", 1)[0] + ":n"))
        wait_for(lambda: len(fake.sent("answerCallbackQuery")) == 3, 30)

    stranger, first, late = fake.sent("answerCallbackQuery")
    assert "Only the person who asked" in stranger["text"]
    assert stranger["show_alert"] in (True, "true")
    assert first["text"] == "Ship it — noted."
    assert late["text"] == "Already answered: Ship it by tg:42."
    (edit,) = fake.sent("editMessageText")
    assert edit["text"] == "Ship v2?\n\n✅ Ship it — chosen by Ada"
    assert "reply_markup" not in edit or not edit["reply_markup"]
    assert sql("SELECT status, choice FROM approvals WHERE id = %s", approval_id) == [
        ("decided", "y")
    ]


def test_an_unanswered_question_expires_in_the_chat(
    tg_settings: Settings, database: str, telegram, tmp_path: Path
) -> None:
    _, fake = telegram
    settings = tg_settings.model_copy(update={"approval_timeout_seconds": 0.5})
    with persais(settings, database) as client:
        send(client, text_update(ADA, "/asker soon"))
        replies(fake, ADA, 1)
        wait_for(lambda: fake.sent("editMessageText"), 30, "the question marked expired")
        assert replies(fake, ADA, 2)[1] == "The question expired without an answer."
    assert fake.sent("editMessageText")[0]["text"].endswith("⌛ Expired without an answer.")


def test_a_5000_character_reply_is_split_at_line_boundaries(
    tg_settings: Settings, database: str, telegram
) -> None:
    _, fake = telegram
    with persais(tg_settings, database) as client:
        send(client, text_update(ADA, "/long please"))
        parts = replies(fake, ADA, 2)
    assert all(len(p) <= 4096 for p in parts)
    assert "\n".join(parts) == "\n".join(f"line {n:04d} " + "x" * 40 for n in range(100))


def test_flood_control_is_honoured(tg_settings: Settings, database: str, telegram) -> None:
    _, fake = telegram
    fake.flood["sendMessage"] = 1
    with persais(tg_settings, database) as client:
        send(client, text_update(ADA, "/echo once"))
        assert replies(fake, ADA, 2) == ["Echo: once", "Echo: once"]  # refused, then sent
    refused, accepted = [c for c in fake.calls if c.method == "sendMessage"]
    assert accepted.at - refused.at >= fake.retry_after * 0.9


def test_the_outbox_edits_one_progress_message_at_most_once_a_second(
    tg_settings: Settings, database: str, telegram
) -> None:
    _, fake = telegram

    async def run() -> list[int]:
        runtime = Runtime(tg_settings, database)
        await runtime.start(worker=False)
        try:
            channel = await runtime.telegram()

            async def put(text: str) -> None:
                async with runtime.pool.connection() as conn:
                    await outbox.put(conn, f"tg:{ADA}", text, key="job:x:progress")

            async def deliver() -> int:
                return await outbox.deliver(runtime.pool, channel.show_note, prefix="tg:")

            shown = []
            await put("plan")
            shown.append(await deliver())
            await put("plan")  # identical: nothing new to show
            shown.append(await deliver())
            for stage in ("scaffold", "code", "validate"):
                await put(stage)
            shown.append(await deliver())  # only the latest
            await put("pull request")
            shown.append(await deliver())
            return shown
        finally:
            await runtime.stop()

    assert asyncio.run(run()) == [1, 0, 1, 1]
    assert fake.texts(ADA) == ["plan"]
    edits = [c.params["text"] for c in fake.calls if c.method == "editMessageText"]
    assert edits == ["validate", "pull request"]
    # Edits are paced among themselves (new messages apart, so that an answer never waits
    # behind a progress line's edit).
    times = [c.at for c in fake.calls if c.method == "editMessageText"]
    assert all(b - a >= 0.95 for a, b in itertools.pairwise(times))


def test_the_cli_sets_the_webhook_with_its_secret_and_reads_its_state(
    tg_settings: Settings, telegram, tmp_path: Path
) -> None:
    import subprocess
    import sys

    from tests.support.processes import persais_env

    url, fake = telegram
    env = persais_env(tmp_path / "cli", TELEGRAM_API_URL=url)
    set_hook = subprocess.run(
        [sys.executable, "-m", "app", "telegram", "set-webhook", "https://persais.example/webhooks/telegram"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert set_hook.returncode == 0, set_hook.stderr
    (call,) = fake.sent("setWebhook")
    assert call["url"] == "https://persais.example/webhooks/telegram"
    assert call["secret_token"] == "telegram-webhook-secret_0123"
    assert call["allowed_updates"] == ["message", "callback_query"]
    info = subprocess.run(
        [sys.executable, "-m", "app", "telegram", "info"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert info.returncode == 0, info.stderr
    assert "pending updates:  3" in info.stdout
    assert "Connection refused" in info.stdout
