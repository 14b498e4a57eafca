"""A local Bot API server: answers the methods Persais calls as Telegram does, records
every call, and can be told to answer 429 with `retry_after` (flood control). And the
updates Telegram posts to our webhook, built as Telegram builds them."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from aiohttp import web

from tests.support.loopback import serve
from tests.support.webhooks import TELEGRAM_TOKEN, post_telegram

BOT_ID = int(TELEGRAM_TOKEN.split(":")[0])
ADA, BEN = 42, 43
NAMES = {ADA: "Ada", BEN: "Ben"}
_update_ids = itertools.count(1000)


def user(uid: int) -> dict[str, Any]:
    return {"id": uid, "is_bot": False, "first_name": NAMES.get(uid, "Eve")}


def text_update(uid: int, text: str, chat: int | None = None) -> dict[str, Any]:
    n = next(_update_ids)
    return {
        "update_id": n,
        "message": {
            "message_id": n, "date": int(time.time()), "from": user(uid),
            "chat": {"id": chat or uid, "type": "private"}, "text": text,
        },
    }  # fmt: skip


def press_update(uid: int, data: str, chat: int = ADA, message_id: int = 1) -> dict[str, Any]:
    n = next(_update_ids)
    return {
        "update_id": n,
        "callback_query": {
            "id": f"cb{n}", "from": user(uid), "chat_instance": "1", "data": data,
            "message": {"message_id": message_id, "date": int(time.time()),
                        "chat": {"id": chat, "type": "private"}, "text": "?"},
        },
    }  # fmt: skip


def send(client: httpx.Client, update: dict[str, Any]) -> None:
    """Post an update to Persais's webhook as Telegram does (with the secret token)."""
    assert post_telegram(client, update).status_code == 200


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    at: float


@dataclass
class FakeTelegram:
    bot_id: int
    calls: list[Call] = field(default_factory=list)
    flood: dict[str, int] = field(default_factory=dict)  # method -> how many 429s to give
    retry_after: int = 1
    webhook: dict[str, Any] = field(default_factory=dict)
    # What getWebhookInfo reports as the last failed delivery (Telegram keeps the last one).
    last_error: tuple[int, str] = (1763719000, "Connection refused")
    _next_id: int = 100
    # getUpdates: what waits to be fetched (confirmed when asked with a higher offset, as
    # Telegram does), whether calls are held before they confirm, and how many overlapped.
    pending: list[dict[str, Any]] = field(default_factory=list)
    hold_polls: bool = False
    handed: list[int] = field(default_factory=list)  # update ids getUpdates answered with
    closing: bool = False  # the server is stopping: waiting polls answer at once
    other_poller: bool = False  # another program polls this bot: getUpdates answers 409
    polls_in_flight: int = 0
    most_polls_in_flight: int = 0

    def push(self, update: dict[str, Any]) -> None:
        """An update for the bot, to be fetched by getUpdates (from any thread)."""
        self.pending.append(update)

    def sent(self, method: str = "sendMessage") -> list[dict[str, Any]]:
        return [c.params for c in self.calls if c.method == method]

    def texts(self, chat_id: int | None = None) -> list[str]:
        return [
            p["text"] for p in self.sent()
            if chat_id is None or int(p["chat_id"]) == chat_id
        ]  # fmt: skip

    async def handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        if request.content_type == "application/json":
            params = await request.json()
        else:
            params = {k: _decode(v) for k, v in (await request.post()).items()}
        self.calls.append(Call(method, params, time.monotonic()))
        if request.match_info["token"].split(":")[0] != str(self.bot_id):
            return web.json_response(
                {"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401
            )
        if method == "getUpdates":
            return await self._get_updates(params, request)
        if self.flood.get(method, 0) > 0:
            self.flood[method] -= 1
            return web.json_response(
                {"ok": False, "error_code": 429,
                 "description": f"Too Many Requests: retry after {self.retry_after}",
                 "parameters": {"retry_after": self.retry_after}},
                status=429,
            )  # fmt: skip
        return web.json_response({"ok": True, "result": self._result(method, params)})

    def _result(self, method: str, params: dict[str, Any]) -> Any:
        me = {"id": self.bot_id, "is_bot": True, "first_name": "Persais", "username": "persais_bot"}
        if method == "getMe":
            return me
        if method in ("sendMessage", "editMessageText", "editMessageReplyMarkup"):
            self._next_id += 1
            message_id = params.get("message_id", self._next_id)
            return {
                "message_id": int(message_id), "date": int(time.time()), "from": me,
                "chat": {"id": int(params["chat_id"]), "type": "private"},
                "text": params.get("text", ""),
            }  # fmt: skip
        if method == "setWebhook":
            self.webhook = params
            return True
        if method == "deleteWebhook":
            self.webhook = {}
            if str(params.get("drop_pending_updates")).lower() == "true":
                self.pending.clear()
            return True
        if method == "getWebhookInfo":
            return {
                "url": self.webhook.get("url", ""), "has_custom_certificate": False,
                "pending_update_count": 3, "last_error_date": self.last_error[0],
                "last_error_message": self.last_error[1],
                "allowed_updates": self.webhook.get("allowed_updates", []),
            }  # fmt: skip
        return True

    async def _get_updates(self, params: dict[str, Any], request: web.Request) -> web.Response:
        if self.webhook.get("url"):
            return web.json_response(
                {"ok": False, "error_code": 409, "description": "Conflict: can't use getUpdates"
                 " method while webhook is active; use deleteWebhook to delete the webhook first"},
                status=409,
            )  # fmt: skip
        if self.other_poller:
            return web.json_response(
                {"ok": False, "error_code": 409, "description": "Conflict: terminated by other"
                 " getUpdates request; make sure that only one bot instance is running"},
                status=409,
            )  # fmt: skip
        self.polls_in_flight += 1
        self.most_polls_in_flight = max(self.most_polls_in_flight, self.polls_in_flight)
        try:
            for _ in itertools.count():  # set from the test's thread: no Event to share
                if not self.hold_polls:
                    break
                await asyncio.sleep(0.01)
            offset = int(params.get("offset", 0))
            if offset > 0:
                self.pending[:] = [u for u in self.pending if u["update_id"] >= offset]
            allowed = params.get("allowed_updates") or []
            deadline = time.monotonic() + float(params.get("timeout", 0))
            while not self.webhook.get("url"):  # setWebhook ends a waiting poll with a 409
                found = [u for u in self.pending if not allowed or set(u) & set(allowed)]
                if request.transport is None or request.transport.is_closing():
                    return web.Response(status=499)  # the poller hung up: it gets nothing
                if found or time.monotonic() >= deadline or self.closing:
                    found = found[: int(params.get("limit", 100))]
                    self.handed.extend(u["update_id"] for u in found)
                    return web.json_response({"ok": True, "result": found})
                await asyncio.sleep(0.002)
            return await self._get_updates(params, request)
        finally:
            self.polls_in_flight -= 1


def _decode(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in "{[":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


@contextmanager
def fake_telegram(bot_id: int) -> Iterator[tuple[str, FakeTelegram]]:
    fake = FakeTelegram(bot_id)
    app = web.Application()
    app.router.add_post("/bot{token}/{method}", fake.handle)
    with serve(app, before_stop=lambda: setattr(fake, "closing", True)) as port:
        yield f"http://127.0.0.1:{port}", fake
