"""Signed GitHub deliveries and Telegram updates, as GitHub and Telegram send them."""

from __future__ import annotations

import json
import uuid
from functools import cache
from pathlib import Path
from typing import Any

import httpx

from app.web.signature import github_signature

GITHUB_SECRET = "It's a Secret to Everybody"
TELEGRAM_TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw0"
TELEGRAM_SECRET = "telegram-webhook-secret_0123"
EXAMPLES = Path(__file__).parent.parent / "fixtures" / "octokit-webhooks-examples"


@cache
def examples() -> dict[str, list[dict[str, Any]]]:
    """The published `@octokit/webhooks-examples`, by event name."""
    data: dict[str, list[dict[str, Any]]] = json.loads(
        (EXAMPLES / "api.github.com.json").read_text()
    )
    return data


def example(event: str, action: str | None = None) -> dict[str, Any]:
    for payload in examples()[event]:
        if action is None or payload.get("action") == action:
            return json.loads(json.dumps(payload))  # a copy the test may change
    raise LookupError(f"no {event}.{action} example")


def github_headers(
    event: str, body: bytes, *, delivery: str | None = None, secret: str = GITHUB_SECRET
) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/044aadd",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-GitHub-Hook-ID": "292430182",
        "X-Hub-Signature-256": github_signature(secret.encode(), body),
    }


def post_github(
    client: httpx.Client,
    event: str,
    payload: dict[str, Any],
    *,
    delivery: str | None = None,
    secret: str = GITHUB_SECRET,
) -> httpx.Response:
    body = json.dumps(payload).encode()
    headers = github_headers(event, body, delivery=delivery, secret=secret)
    return client.post("/webhooks/github", content=body, headers=headers)


def telegram_update(update_id: int, text: str = "/start", user_id: int = 42) -> dict[str, Any]:
    """A private-chat text message update, shaped as the Bot API sends it."""
    return {
        "update_id": update_id,
        "message": {
            "message_id": update_id % 100000,
            "from": {"id": user_id, "is_bot": False, "first_name": "Ada", "language_code": "en"},
            "chat": {"id": user_id, "first_name": "Ada", "type": "private"},
            "date": 1763719200,
            "text": text,
        },
    }


def post_telegram(
    client: httpx.Client, update: dict[str, Any], *, secret: str | None = TELEGRAM_SECRET
) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers["X-Telegram-Bot-Api-Secret-Token"] = secret
    return client.post("/webhooks/telegram", content=json.dumps(update).encode(), headers=headers)
