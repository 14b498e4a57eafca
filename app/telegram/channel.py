"""The Telegram channel: a Bot pointed at the Bot API (or a local/test server), a
Dispatcher with our routers, and the few ways Persais speaks in a chat."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta
from typing import Any

from aiogram import Bot, Dispatcher
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import TelegramBadRequest, TelegramForbiddenError
from aiogram.types import Update
from aiogram.types.update import UpdateTypeLookupError
from psycopg_pool import AsyncConnectionPool
from pydantic import ValidationError

from app.orchestrator.approvals import Approval, decided_text
from app.orchestrator.orchestrator import Orchestrator, Outbound
from app.outbox import Note
from app.routing import DropDelivery
from app.settings import Settings
from app.telegram.handlers import access, callbacks, messages
from app.telegram.keyboards import approval_keyboard, link_keyboard
from app.telegram.kinds import READ_KINDS
from app.telegram.retry import RetryAfter
from app.telegram.text import split_message

log = logging.getLogger(__name__)


def make_bot(settings: Settings) -> Bot:
    assert settings.telegram_bot_token is not None
    session = AiohttpSession(api=TelegramAPIServer.from_base(settings.telegram_api_url))
    bot = Bot(settings.telegram_bot_token.get_secret_value(), session=session)
    bot.session.middleware(RetryAfter())
    return bot


class TelegramChannel:
    def __init__(
        self, settings: Settings, pool: AsyncConnectionPool, orchestrator: Orchestrator
    ) -> None:
        self.bot = make_bot(settings)
        self.orchestrator = orchestrator
        self.dispatcher = Dispatcher()
        self.dispatcher.update.outer_middleware(
            access.Allowlist(
                set(settings.telegram_allowed_users),
                set(settings.telegram_admins),
                pool,
                timedelta(seconds=settings.refusal_window_seconds),
            )
        )
        self.dispatcher.include_routers(callbacks.build_router(), messages.build_router())
        self.min_interval = 1.0  # Telegram: about one message a second per chat
        # New messages and edits are paced apart: an answer must not wait behind a progress
        # line's edit (after a deploy's handoff, "is live" and then the progress line's last
        # edit held the new process's first answer back a steady 2 s).
        self._next_slot: dict[tuple[int, bool], float] = {}

    async def feed(self, update: dict[str, Any]) -> None:
        """Hand an update to the routers; one they cannot read is dropped, not retried."""
        kinds = [key for key in update if key != "update_id"]
        if len(kinds) != 1 or kinds[0] not in READ_KINDS:
            raise DropDelivery("unhandled_kind", f"an update of kind {kinds} is not read")
        try:  # validated apart from the handlers, so that their errors are retried
            parsed = Update.model_validate(update, context={"bot": self.bot})
            parsed.event_type  # noqa: B018 -- raises for a kind aiogram does not know
        except (ValidationError, UpdateTypeLookupError) as exc:
            first = str(exc).splitlines()[:2]
            raise DropDelivery("malformed", "unreadable update: " + " ".join(first)) from None
        await self.dispatcher.feed_update(
            self.bot, parsed, orchestrator=self.orchestrator, channel=self
        )

    async def close(self) -> None:
        await self.bot.session.close()

    async def show_note(self, note: Note) -> dict[str, Any] | None:
        """Show an outbox row: a question with its buttons, an edit of a message shown
        before (a job's progress), or a new message. At most one a second per chat."""
        chat_id = int(note.conversation.removeprefix("tg:"))
        try:
            question = note.approval and await self.orchestrator.open_question(note.approval)
            if question:
                await self.send(chat_id, Outbound(note.text, question.agent, question))
                return None
            ref = note.channel_ref if note.key is not None else None
            await self._pace(chat_id, edit=bool(ref))
            if ref:
                try:
                    await self.bot.edit_message_text(
                        text=note.text[:4096], chat_id=chat_id,
                        message_id=ref["message_id"],
                    )  # fmt: skip
                    return None
                except TelegramBadRequest as exc:
                    if "not modified" in exc.message:
                        return None
                    log.info("could not edit message in %s (%s); sending anew", chat_id, exc)
            sent = await self.bot.send_message(
                chat_id, note.text[:4096], reply_markup=link_keyboard(note.links)
            )
            return {"chat_id": chat_id, "message_id": sent.message_id}
        except TelegramForbiddenError:  # the person blocked the bot: nothing more to do
            log.info("chat %s blocked the bot; dropping outbox row %s", chat_id, note.id)
            return None

    async def _pace(self, chat_id: int, *, edit: bool = False) -> None:
        """Wait for this chat's next free slot for a new message (or, `edit`, for an edit).
        The slot is taken before sleeping, so concurrent senders (a reply, the outbox)
        queue up instead of colliding."""
        now = time.monotonic()
        slot = max(now, self._next_slot.get((chat_id, edit), 0.0))
        self._next_slot[chat_id, edit] = slot + self.min_interval
        if slot > now:
            await asyncio.sleep(slot - now)

    async def send_all(self, chat_id: int, replies: list[Outbound]) -> None:
        for reply in replies:
            await self.send(chat_id, reply)

    async def send(self, chat_id: int, reply: Outbound) -> None:
        parts = split_message(reply.text or "…")
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            markup = approval_keyboard(reply.approval) if last and reply.approval else None
            await self._pace(chat_id)
            sent = await self.bot.send_message(chat_id, part, reply_markup=markup)
            if markup is not None and reply.approval is not None:
                await self.orchestrator.remember_message(
                    reply.approval.id, {"chat_id": chat_id, "message_id": sent.message_id}
                )

    async def show_decided(self, approval: Approval, who: str) -> None:
        """Take the buttons off the question and say who decided what (or that it expired)."""
        ref = approval.channel_ref
        if not ref:
            return
        try:
            await self.bot.edit_message_text(
                text=decided_text(approval, who)[:4096],
                chat_id=ref["chat_id"],
                message_id=ref["message_id"],
                reply_markup=None,
            )
        except TelegramBadRequest as exc:  # deleted by the person, or already edited
            log.info("could not edit approval %s: %s", approval.id, exc.message)

    async def expired(self, approval: Approval, replies: list[Outbound]) -> None:
        await self.show_decided(approval, "")
        await self.send_all(int(approval.conversation.removeprefix("tg:")), replies)
