"""Telegram by long polling, for a bot with no webhook (a laptop with no public URL).

Updates go into the same inbox as the webhook's, under the same delivery id (bot id +
update_id). Telegram forgets an update only when getUpdates is called with a higher offset,
and the poller asks for that offset only after the update's row has committed: a process
killed in between is sent the same update again, and the inbox's delivery id keeps it from
being processed twice. On start the offset follows the highest update_id stored, so a
restart does not fetch again what it already has.

One poller per database: it holds a Postgres advisory lock on its own connection while it
polls (Telegram itself ends one of two concurrent getUpdates with a 409).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass
from typing import Any

import httpx
from psycopg import AsyncConnection

from app import periodic
from app.inbox import Delivery
from app.intake import Intake, Unstorable
from app.settings import Settings
from app.telegram.kinds import READ_KINDS
from app.web import telegram_updates
from app.web.metrics import Metrics
from app.web.refusal import Refusal
from app.web.telegram_updates import unread_kind, update_id_of

log = logging.getLogger(__name__)

# An arbitrary constant ("tgpoll"): the advisory lock one poller per database holds.
POLL_LOCK_KEY = 0x7467_706F_6C6C
WEBHOOK_RECHECK_SECONDS = 30.0  # a webhook is set: ask Telegram again this often
STANDBY_SECONDS = 5.0  # another process polls: try its lock this often
CONFLICT_PAUSE_SECONDS = 1.0  # getUpdates answered 409: wait this long before asking again


class WebhookActive(Exception):
    """getUpdates answered 409: a webhook is set (or another poller runs elsewhere)."""


def wants_polling(forced: str | None, webhook_url: str) -> bool:
    """Poll when forced to, or (mode unset) when Telegram knows no webhook for the bot."""
    if forced is not None:
        return forced == "polling"
    return not webhook_url


async def stored_offset(conn: AsyncConnection[Any], bot_id: int) -> int | None:
    """The offset after the highest update_id of this bot in the inbox (None: none stored)."""
    cur = await conn.execute(
        "SELECT max(split_part(delivery_id, ':', 2)::bigint) FROM inbox"
        " WHERE source = 'telegram' AND delivery_id LIKE %s",
        (f"{bot_id}:%",),
    )
    row = await cur.fetchone()
    return None if row is None or row[0] is None else int(row[0]) + 1


def delivery(bot_id: int, update: dict[str, Any]) -> Delivery | None:
    """The inbox row for a polled update, exactly as the webhook would store it; None for
    one Persais does not read or cannot read (logged; the offset still moves past it)."""
    try:
        update_id = update_id_of(update)
        if unread_kind(update) is not None:
            return None
    except Refusal as refusal:
        log.warning("dropped polled update %s: %s", update.get("update_id"), refusal.message)
        return None
    body = json.dumps(update, ensure_ascii=False)
    return telegram_updates.delivery(bot_id, update_id, update, body)


@dataclass
class TelegramPoller:
    api_url: str
    token: str
    bot_id: int
    conninfo: str
    intake: Intake
    forced: str | None  # PERSAIS_TELEGRAM_MODE: None (ask Telegram) or "polling"
    metrics: Metrics | None = None  # counted as the webhook counts (received, duplicate)
    long_poll_seconds: int = 25
    state: str = "starting"  # then "polling", "webhook", "standby" or "failing"

    @classmethod
    def from_settings(
        cls, settings: Settings, conninfo: str, intake: Intake, metrics: Metrics | None = None
    ) -> TelegramPoller:
        assert settings.telegram_bot_token is not None
        assert settings.telegram_bot_id is not None
        return cls(
            api_url=settings.telegram_api_url,
            token=settings.telegram_bot_token.get_secret_value(),
            bot_id=settings.telegram_bot_id,
            conninfo=conninfo,
            intake=intake,
            forced=settings.telegram_mode,
            metrics=metrics,
        )

    async def run(self) -> None:
        """Until cancelled: poll while this process holds the lock and no webhook is set."""
        timeout = httpx.Timeout(10.0, read=self.long_poll_seconds + 10.0)
        pause = 1.0
        async with httpx.AsyncClient(timeout=timeout) as http:
            while True:
                try:
                    await self._turn(http)
                    pause = 1.0
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # Telegram or the database is away: try again
                    if periodic.stop_asked():  # the error was a cancellation's aftermath
                        raise asyncio.CancelledError from None
                    self.state = "failing"
                    log.warning("Telegram polling: %s; trying again in %.0f s", _say(exc), pause)
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, 60.0)

    async def _turn(self, http: httpx.AsyncClient) -> None:
        info = await self._call(http, "getWebhookInfo", {})
        url = str(info.get("url") or "")
        if not wants_polling(self.forced, url):
            if self.state != "webhook":
                log.info("Telegram: a webhook is set (%s); not polling", url)
            self.state = "webhook"
            await asyncio.sleep(WEBHOOK_RECHECK_SECONDS)
            return
        if url:  # PERSAIS_TELEGRAM_MODE=polling: getUpdates cannot work beside a webhook
            log.warning("PERSAIS_TELEGRAM_MODE=polling: deleting the webhook %s", url)
            await self._call(http, "deleteWebhook", {"drop_pending_updates": False})
        conn = await AsyncConnection.connect(self.conninfo, autocommit=True)
        try:
            cur = await conn.execute("SELECT pg_try_advisory_lock(%s)", (POLL_LOCK_KEY,))
            locked = await cur.fetchone()
            if locked is None or not locked[0]:
                self.state = "standby"
                await asyncio.sleep(STANDBY_SECONDS)
                return
            await self._poll(http, conn)
        finally:
            with contextlib.suppress(Exception):
                await conn.close()  # closing the session releases the lock

    async def _poll(self, http: httpx.AsyncClient, conn: AsyncConnection[Any]) -> None:
        offset = await stored_offset(conn, self.bot_id)
        if self.state != "polling":
            log.info("Telegram: polling for updates (offset %s)", offset)
        self.state = "polling"
        while True:
            await conn.execute("SELECT 1")  # the lock's session is alive, or this raises
            params: dict[str, Any] = {
                "timeout": self.long_poll_seconds,
                "allowed_updates": list(READ_KINDS),
            }
            if offset is not None:
                params["offset"] = offset
            try:
                updates = await self._call(http, "getUpdates", params)
            except WebhookActive as exc:
                # A webhook was set (the next turn sees it), or another program polls this
                # bot outside this database: then the pause keeps the two from spinning.
                log.warning("Telegram: stopped polling (%s)", exc)
                await asyncio.sleep(CONFLICT_PAUSE_SECONDS)
                return
            offset = await self._store(updates, offset)

    async def _store(self, updates: list[Any], offset: int | None) -> int | None:
        """Store the batch in order (one at a time: the intake commits concurrent stores in
        parallel, and one chat's updates must keep their order); return the offset past it.
        A database error propagates: nothing past the last stored update is confirmed."""
        for update in updates:
            if not isinstance(update, dict):
                log.warning("dropped a polled Telegram update that is not an object")
                continue
            row = delivery(self.bot_id, update)
            if row is not None:
                try:
                    inbox_id = await self.intake.store(row)
                except Unstorable as exc:
                    log.warning("dropped polled Telegram update %s: %s", row.delivery_id, exc)
                else:
                    if self.metrics is not None:
                        counter = self.metrics.received if inbox_id else self.metrics.duplicates
                        counter.labels("telegram").inc()
            with contextlib.suppress(Refusal):  # no id: nothing to confirm it by
                offset = max(offset or 0, update_id_of(update) + 1)
        return offset

    async def _call(self, http: httpx.AsyncClient, method: str, params: dict[str, Any]) -> Any:
        response = await http.post(f"{self.api_url}/bot{self.token}/{method}", json=params)
        try:
            answer = response.json()
        except ValueError:
            answer = {}
        if response.status_code == 409:
            raise WebhookActive(answer.get("description", "409 Conflict"))
        if response.status_code == 429:
            retry_after = (answer.get("parameters") or {}).get("retry_after", 5)
            await asyncio.sleep(float(retry_after))
            raise TelegramError(f"{method}: flood control, waited {retry_after} s")
        if not answer.get("ok"):
            description = answer.get("description", f"HTTP {response.status_code}")
            raise TelegramError(f"{method}: {description}")
        return answer["result"]


class TelegramError(Exception):
    pass


def _say(exc: Exception) -> str:
    return str(exc) or type(exc).__name__


def poller(
    settings: Settings, conninfo: str, intake: Intake, metrics: Metrics | None = None
) -> TelegramPoller | None:
    """The poller this process runs, or None (no bot, or PERSAIS_TELEGRAM_MODE=webhook)."""
    if settings.telegram_bot_token is None or settings.telegram_mode == "webhook":
        return None
    return TelegramPoller.from_settings(settings, conninfo, intake, metrics)
