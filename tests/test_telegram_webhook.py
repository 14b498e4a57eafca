"""`POST /webhooks/telegram`: the secret-token header, idempotency by bot id + update_id."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from app.settings import Settings
from tests.support.config import make_settings
from tests.support.fake_telegram import fake_telegram
from tests.support.server import client_for, running_server
from tests.support.waiting import wait_for
from tests.support.webhooks import TELEGRAM_TOKEN, post_telegram, telegram_update

BOT_ID = TELEGRAM_TOKEN.split(":")[0]

# The deliveries' jobs (a worker also queues an index run of the home repository).
DELIVERY_JOBS = (
    "SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'persais.process_delivery'"
)


@pytest.fixture
def client(settings: Settings, database: str) -> Iterator[httpx.Client]:
    # Updates are handled for real: the sender (not on the allowlist) is refused through a
    # local Bot API, so each delivery ends `processed`.
    with (
        fake_telegram(int(BOT_ID)) as (api, _),
        running_server(settings.model_copy(update={"telegram_api_url": api}), database) as (url, _),
        client_for(url) as http,
    ):
        yield http


def test_an_update_is_stored_under_bot_id_and_update_id(client: httpx.Client, sql) -> None:
    response = post_telegram(client, telegram_update(1001, "/help"))
    assert response.status_code == 200
    assert sql("SELECT delivery_id, event FROM inbox") == [(f"{BOT_ID}:1001", "message")]
    wait_for(lambda: sql("SELECT 1 FROM inbox WHERE status = 'processed'"))


def test_a_repeated_update_id_is_processed_once(client: httpx.Client, sql) -> None:
    for _ in range(3):  # Telegram resends until it gets a 2xx
        assert post_telegram(client, telegram_update(7, "hello")).status_code == 200
    wait_for(lambda: sql("SELECT 1 FROM inbox WHERE status = 'processed'"))
    assert sql("SELECT count(*), max(handled_count) FROM inbox") == [(1, 1)]
    assert sql(DELIVERY_JOBS) == [(1,)]


@pytest.mark.parametrize("secret", [None, "", "wrong-secret", "telegram-webhook-secret_012"])
def test_a_wrong_or_missing_secret_token_is_refused(
    client: httpx.Client, sql, secret: str | None
) -> None:
    response = post_telegram(client, telegram_update(5), secret=secret)
    assert response.status_code == 401
    assert sql("SELECT count(*) FROM inbox") == [(0,)]


@pytest.mark.parametrize(
    "update",
    [{"message": {"text": "no update_id"}}, {"update_id": "7"}, {"update_id": -1}, [1, 2]],
)
def test_an_update_without_a_valid_update_id_is_refused(
    client: httpx.Client, sql, update: object
) -> None:
    response = post_telegram(client, update)  # type: ignore[arg-type]
    assert response.status_code == 400
    assert sql("SELECT count(*) FROM inbox") == [(0,)]


def test_without_a_webhook_secret_telegram_is_off(tmp_path, database: str, sql) -> None:
    settings = make_settings(tmp_path, database, TELEGRAM_WEBHOOK_SECRET=None)
    with running_server(settings, database) as (url, _), client_for(url) as client:
        assert post_telegram(client, telegram_update(9)).status_code == 403
        assert post_telegram(client, telegram_update(9), secret=None).status_code == 403
    assert sql("SELECT count(*) FROM inbox") == [(0,)]
