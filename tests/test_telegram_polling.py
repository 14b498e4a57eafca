"""Telegram by long polling (no public URL): updates reach the same inbox as the webhook's,
Telegram is told to forget one only after it is stored, one process polls per database, and
a webhook set at Telegram (or PERSAIS_TELEGRAM_MODE) decides the mode."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import psycopg
import pytest

from app.settings import CHECKOUT_ROOT, Settings, SettingsError, load_settings
from app.web import telegram_polling
from tests.support.agents import write_agent
from tests.support.config import make_settings
from tests.support.fake_telegram import ADA, BOT_ID, FakeTelegram, fake_telegram, text_update
from tests.support.processes import free_port, persais_env
from tests.support.server import client_for, running_server
from tests.support.stack import PersaisProcess
from tests.support.waiting import wait_for
from tests.support.webhooks import post_telegram


@pytest.fixture
def telegram() -> Iterator[tuple[str, FakeTelegram]]:
    with fake_telegram(BOT_ID) as (url, fake):
        yield url, fake


@pytest.fixture
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ask Telegram about its webhook, and another process's lock, every 0.2 s."""
    monkeypatch.setattr(telegram_polling, "WEBHOOK_RECHECK_SECONDS", 0.2)
    monkeypatch.setattr(telegram_polling, "STANDBY_SECONDS", 0.2)


def polling_settings(tmp_path: Path, database: str, api: str, **values: str | None) -> Settings:
    agents = tmp_path / "agents"
    write_agent(agents, "echo")
    return make_settings(
        tmp_path / "home", database,
        TELEGRAM_API_URL=api, PERSAIS_AGENTS_DIR=str(agents),
        PERSAIS_TELEGRAM_ALLOWED_USERS=str(ADA), **{"PERSAIS_TELEGRAM_MODE": None, **values},
    )  # fmt: skip


def offsets(fake: FakeTelegram) -> list[int | None]:
    return [c.params.get("offset") for c in fake.calls if c.method == "getUpdates"]


def test_polled_updates_go_through_the_inbox_in_order_and_are_answered(
    tmp_path: Path, database: str, telegram, sql
) -> None:
    api, fake = telegram
    first, second = text_update(ADA, "/echo"), text_update(ADA, "hello")
    with running_server(polling_settings(tmp_path, database, api), database) as (url, _):
        wait_for(lambda: offsets(fake), 30, "a getUpdates call")
        fake.push(first)
        fake.push(second)
        wait_for(lambda: len(fake.texts(ADA)) >= 2, 60, "two replies")
        wait_for(lambda: offsets(fake)[-1] == second["update_id"] + 1, 10, "the offset")
        with client_for(url) as client:
            metrics = client.get("/metrics").text
    assert 'persais_deliveries_received_total{source="telegram"} 2.0' in metrics
    assert "now talking to echo" in fake.texts(ADA)[0], fake.texts(ADA)
    assert fake.texts(ADA)[1] == "Echo: hello"
    assert sql("SELECT delivery_id, event, status, handled_count FROM inbox ORDER BY id") == [
        (f"{BOT_ID}:{first['update_id']}", "message", "processed", 1),
        (f"{BOT_ID}:{second['update_id']}", "message", "processed", 1),
    ]
    asked = [c.params for c in fake.calls if c.method == "getUpdates"]
    assert all(p["allowed_updates"] == ["message", "callback_query"] for p in asked)
    assert fake.pending == []  # confirmed: Telegram would not send them again


def test_a_restart_asks_from_the_highest_stored_update(
    tmp_path: Path, database: str, telegram
) -> None:
    api, fake = telegram
    update = text_update(ADA, "/echo")
    settings = polling_settings(tmp_path, database, api)
    with running_server(settings, database):
        fake.push(update)
        wait_for(lambda: fake.texts(ADA), 60, "a reply")
    before = len(fake.calls)
    with running_server(settings, database):
        wait_for(lambda: [c for c in fake.calls[before:] if c.method == "getUpdates"], 30, "a poll")
    restarted = [c.params for c in fake.calls[before:] if c.method == "getUpdates"]
    assert restarted[0]["offset"] == update["update_id"] + 1


def test_one_process_polls_per_database_and_another_takes_over(
    tmp_path: Path, database: str, telegram, quick
) -> None:
    api, fake = telegram
    settings = polling_settings(tmp_path, database, api)
    with ExitStack() as second, ExitStack() as first:
        _, one = first.enter_context(running_server(settings, database))
        wait_for(lambda: one.poller is not None and one.poller.state == "polling", 30)
        _, two = second.enter_context(running_server(settings, database))
        wait_for(lambda: two.poller is not None and two.poller.state == "standby", 30)
        fake.push(text_update(ADA, "/echo"))
        wait_for(lambda: fake.texts(ADA), 60, "a reply")
        assert one.poller is not None
        assert one.poller.state == "polling"
        first.close()  # the polling process stops: the other takes the lock and the updates
        wait_for(lambda: two.poller is not None and two.poller.state == "polling", 30)
        fake.push(text_update(ADA, "taken over"))
        wait_for(lambda: "Echo: taken over" in fake.texts(ADA), 60, "a reply from the second")
    assert fake.most_polls_in_flight == 1


def test_a_webhook_set_at_telegram_means_no_polling_until_it_is_deleted(
    tmp_path: Path, database: str, telegram, quick, sql
) -> None:
    api, fake = telegram
    fake.webhook = {"url": "https://persais.example/webhooks/telegram"}
    with running_server(polling_settings(tmp_path, database, api), database) as (url, runtime):
        assert runtime.poller is not None
        wait_for(lambda: runtime.poller.state == "webhook", 30, "webhook mode")
        with client_for(url) as client:  # the webhook route takes the update
            assert post_telegram(client, text_update(ADA, "/echo")).status_code == 200
        wait_for(lambda: fake.texts(ADA), 60, "a reply to the webhook's update")
        assert offsets(fake) == []
        fake.webhook = {}  # `persais telegram delete-webhook`
        wait_for(lambda: runtime.poller.state == "polling", 30, "polling")
        fake.push(text_update(ADA, "polled"))
        wait_for(lambda: "Echo: polled" in fake.texts(ADA), 60, "a reply to the polled update")
        fake.webhook = {"url": "https://persais.example/webhooks/telegram"}  # set again
        wait_for(lambda: runtime.poller.state == "webhook", 30, "back to the webhook")
    assert sql("SELECT count(*) FROM inbox") == [(2,)]


def test_another_program_polling_the_bot_is_waited_out_without_spinning(
    tmp_path: Path, database: str, telegram
) -> None:
    api, fake = telegram
    fake.other_poller = True
    with running_server(polling_settings(tmp_path, database, api), database):
        wait_for(lambda: offsets(fake), 30, "a getUpdates call")
        time.sleep(3)
        asked = len(offsets(fake))
        assert asked <= 10  # about one a second (CONFLICT_PAUSE_SECONDS); a spin asks hundreds
        fake.other_poller = False  # the other program stopped
        fake.push(text_update(ADA, "/echo"))
        wait_for(lambda: fake.texts(ADA), 60, "a reply once it is alone")


def test_forced_modes(tmp_path: Path, database: str, telegram, quick) -> None:
    api, fake = telegram
    hook = {"url": "https://persais.example/webhooks/telegram"}
    fake.webhook = dict(hook)
    forced = polling_settings(tmp_path, database, api, PERSAIS_TELEGRAM_MODE="polling")
    # No worker: stopping while the worker warms up leaks an agent host (its own issue).
    with running_server(forced, database, worker=False) as (_, runtime):
        wait_for(lambda: runtime.poller is not None and runtime.poller.state == "polling", 30)
    assert fake.sent("deleteWebhook") == [{"drop_pending_updates": False}]
    fake.calls.clear()
    webhook_only = polling_settings(tmp_path, database, api, PERSAIS_TELEGRAM_MODE="Webhook")
    with running_server(webhook_only, database, worker=False) as (_, runtime):
        assert runtime.poller is None
    assert [c.method for c in fake.calls if c.method in ("getUpdates", "getWebhookInfo")] == []
    with pytest.raises(SettingsError, match="PERSAIS_TELEGRAM_MODE: expected polling or webhook"):
        load_settings(None, PERSAIS_TELEGRAM_MODE="sometimes")


def test_the_cli_switches_modes_and_says_so(tmp_path: Path, telegram) -> None:
    api, fake = telegram

    def persais(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "app", "telegram", *args],
            env=persais_env(tmp_path / "cli", TELEGRAM_API_URL=api,
                            **{"PERSAIS_TELEGRAM_MODE": "", **env}),
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    hook = persais("set-webhook", "https://persais.example/webhooks/telegram")
    assert hook.returncode == 0, hook.stderr
    assert "mode: webhook" in hook.stdout
    assert fake.webhook["url"] == "https://persais.example/webhooks/telegram"
    assert "persais takes:    the webhook" in persais("info").stdout
    deleted = persais("delete-webhook")
    assert deleted.returncode == 0, deleted.stderr
    assert "webhook deleted" in deleted.stdout
    assert "mode: polling" in deleted.stdout
    assert fake.webhook == {}
    assert "persais takes:    long polling (no webhook set)" in persais("info").stdout
    assert fake.sent("deleteWebhook")[-1]["drop_pending_updates"] in (False, "false")
    forced = persais("delete-webhook", PERSAIS_TELEGRAM_MODE="webhook")
    assert "PERSAIS_TELEGRAM_MODE=webhook: nothing polls" in forced.stdout


STORE_WAITING = (
    "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
    " AND query LIKE 'INSERT INTO inbox%%'"
)


@pytest.mark.slow
def test_a_kill_between_getupdates_and_the_store_loses_nothing_and_repeats_nothing(
    tmp_path: Path, database: str, telegram, sql
) -> None:
    """`persais serve` as a real process, SIGKILLed (1) after Telegram handed it an update
    and before its row committed, and (2) after the row committed and before Telegram heard
    the next offset. Each update is stored once and answered once."""
    api, fake = telegram
    agents = tmp_path / "agents"
    write_agent(agents, "echo")
    env = persais_env(
        tmp_path / "home", database, TELEGRAM_API_URL=api, PERSAIS_TELEGRAM_MODE="",
        PERSAIS_AGENTS_DIR=str(agents), PERSAIS_TELEGRAM_ALLOWED_USERS=str(ADA),
    )  # fmt: skip
    server = PersaisProcess(env, "127.0.0.1", free_port(), CHECKOUT_ROOT, tmp_path / "serve.log")
    first, second = text_update(ADA, "/echo"), text_update(ADA, "hello")
    try:
        server.start()
        server.wait_ready()
        wait_for(lambda: fake.polls_in_flight == 1, 30, "a waiting poll")
        with psycopg.connect(database) as blocker:  # holds the inbox while the kill lands
            blocker.execute("LOCK TABLE inbox IN SHARE ROW EXCLUSIVE MODE")
            fake.push(first)
            wait_for(lambda: first["update_id"] in fake.handed, 30, "getUpdates to hand it")
            wait_for(lambda: sql(STORE_WAITING), 30, "the store to wait for the inbox")
            server.kill()
            blocker.rollback()
        assert sql("SELECT count(*) FROM inbox") == [(0,)]
        assert [u["update_id"] for u in fake.pending] == [first["update_id"]]  # unconfirmed
        server.start()
        wait_for(lambda: fake.texts(ADA), 120, "the reply after the restart")

        wait_for(lambda: fake.polls_in_flight == 1, 30, "a waiting poll")
        fake.hold_polls = True  # the poll after this one is held before it confirms
        fake.push(second)
        wait_for(lambda: "Echo: hello" in fake.texts(ADA), 60, "the reply to the second")
        server.kill()
        before = len(fake.calls)
        fake.hold_polls = False
        server.start()
        wait_for(lambda: offsets_since(fake, before), 120, "a poll after the restart")
        assert offsets_since(fake, before)[0] == second["update_id"] + 1
        server.wait_ready()
    finally:
        server.stop()
    assert fake.texts(ADA)[1:] == ["Echo: hello"]
    assert "now talking to echo" in fake.texts(ADA)[0]
    assert sql("SELECT delivery_id, status, handled_count FROM inbox ORDER BY id") == [
        (f"{BOT_ID}:{first['update_id']}", "processed", 1),
        (f"{BOT_ID}:{second['update_id']}", "processed", 1),
    ]


def offsets_since(fake: FakeTelegram, start: int) -> list[int | None]:
    return [c.params.get("offset") for c in fake.calls[start:] if c.method == "getUpdates"]


def test_a_polled_update_is_read_as_the_webhook_reads_it() -> None:
    """Both doors share one check and one row: what the webhook refuses with a 400 the poller
    drops with a log line (and never crashes on), what it drops unread the poller drops."""
    chat = {"id": ADA, "type": "private"}
    good = {"update_id": 8, "message": {"message_id": 1, "date": 0, "chat": chat, "text": "x"}}
    row = telegram_polling.delivery(BOT_ID, good)
    assert row is not None
    assert (row.delivery_id, row.event, row.lock) == (f"{BOT_ID}:8", "message", f"tg:{ADA}")
    assert json.loads(row.body) == good
    hostile = [
        {"message": good["message"]},  # no update_id
        {"update_id": "8", "message": good["message"]},  # not an integer
        {"update_id": -1, "message": good["message"]},
        {"update_id": True, "message": good["message"]},
        {"update_id": 9, "message": "a string"},
        {"update_id": 10},  # no event
        {"update_id": 11, "poll": {"id": "1"}},  # a kind Persais does not read
    ]
    assert [telegram_polling.delivery(BOT_ID, u) for u in hostile] == [None] * len(hostile)
