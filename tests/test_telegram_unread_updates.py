"""Telegram updates Persais does not read: answered once and dropped (counted), or refused
at the door when malformed; none is retried or dead-lettered."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from app.settings import Settings
from tests.support.fake_telegram import fake_telegram
from tests.support.server import client_for, running_server
from tests.support.waiting import wait_for
from tests.support.webhooks import TELEGRAM_TOKEN, post_telegram, telegram_update

BOT_ID = int(TELEGRAM_TOKEN.split(":")[0])


@pytest.fixture
def client(settings: Settings, database: str) -> Iterator[httpx.Client]:
    with (
        fake_telegram(BOT_ID) as (api, _),
        running_server(settings.model_copy(update={"telegram_api_url": api}), database) as (url, _),
        client_for(url) as http,
    ):
        yield http


def counter(client: httpx.Client, name: str, **labels: str) -> float:
    text = client.get("/metrics").text
    for line in text.splitlines():
        match = re.match(rf"{name}_total\{{(.*)\}} (\S+)$", line)
        if match and all(f'{k}="{v}"' in match.group(1) for k, v in labels.items()):
            return float(match.group(2))
    return 0.0


def with_message(update_id: int, **changes: Any) -> dict[str, Any]:
    update = telegram_update(update_id)
    update["message"].update(changes)
    return update


UNREAD = [
    {"update_id": 1, "edited_message": telegram_update(1)["message"]},
    {"update_id": 2, "poll": {"id": "5", "question": "?", "options": []}},
    {"update_id": 3, "my_chat_member": {"chat": {"id": 1}}},
    {"update_id": 4, "a_kind_from_the_future": {"x": 1}},
]


def test_kinds_persais_does_not_read_are_answered_once_and_dropped(
    client: httpx.Client, sql
) -> None:
    for update in UNREAD:
        response = post_telegram(client, update)
        assert response.status_code == 200, response.text
        assert response.json() == {"status": "dropped", "reason": "unhandled_kind"}
    assert sql("SELECT count(*) FROM inbox") == [(0,)]
    assert counter(client, "persais_deliveries_dropped", reason="unhandled_kind") == len(UNREAD)


MALFORMED = [
    {"update_id": 10, "message": "hello"},
    {"update_id": 11, "message": ["hello"]},
    with_message(12, text=42),
    with_message(13, text={"nested": "text"}),
    with_message(14, chat="me"),
    with_message(15, **{"from": 7}),
    {"update_id": 16, "callback_query": "approve"},
    {"update_id": 17, "callback_query": {"id": 5, "from": {"id": 1}}},
    {"update_id": 18, "callback_query": {"id": "5", "from": {"id": 1}, "data": 3}},
    {"update_id": 19},
    {**telegram_update(20), "poll": {"id": "5"}},
]


@pytest.mark.parametrize("update", MALFORMED)
def test_malformed_updates_are_refused_at_the_door(
    client: httpx.Client, sql, update: dict[str, Any]
) -> None:
    response = post_telegram(client, update)
    assert response.status_code == 400, response.text
    assert response.json()["reason"] == "payload"
    assert sql("SELECT count(*) FROM inbox") == [(0,)]


def test_an_update_aiogram_cannot_read_is_dropped_once_not_retried(
    client: httpx.Client, sql
) -> None:
    # Passes the door (the fields handlers use are there) but not the Bot API's schema.
    update = telegram_update(30)
    del update["message"]["date"]
    assert post_telegram(client, update).status_code == 200
    wait_for(lambda: sql("SELECT status FROM inbox") == [("ignored",)])
    assert sql("SELECT attempts, handled_count, last_error FROM inbox") == [(1, 1, None)]
    assert counter(client, "persais_deliveries_dropped", reason="malformed") == 1
    assert counter(client, "persais_deliveries_processed", outcome="failed") == 0
    assert counter(client, "persais_deliveries_processed", outcome="dead") == 0
