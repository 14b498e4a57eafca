"""Who may talk to Persais: the allowlist, checked before any handler runs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from aiogram import BaseMiddleware, Bot
from aiogram.types import TelegramObject, Update
from psycopg_pool import AsyncConnectionPool

from app import audit, refusals

REFUSAL = "Sorry, I only work for the people I know."


class Allowlist(BaseMiddleware):
    """Strangers get one short refusal and an audit entry per window (see app/refusals.py);
    nothing else runs for them. For everyone else, handlers receive `admin` (bool) and
    `user_name`."""

    def __init__(
        self,
        allowed: set[int],
        admins: set[int],
        pool: AsyncConnectionPool,
        window: timedelta = timedelta(days=1),
    ) -> None:
        self.allowed = allowed | admins
        self.admins = admins
        self.pool = pool
        self.window = window

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        assert isinstance(event, Update)
        inner = event.event
        user = getattr(inner, "from_user", None)
        if user is None:  # channel posts, service updates: nobody to answer
            return None
        if user.id not in self.allowed:
            await self._refuse(data["bot"], event, user.id)
            return None
        data["admin"] = user.id in self.admins
        data["user_name"] = user.full_name
        return await handler(event, data)

    async def _refuse(self, bot: Bot, update: Update, user_id: int) -> None:
        who = f"tg:{user_id}"
        async with self.pool.connection() as conn:
            verdict = await refusals.refuse(conn, who, self.window)
            if verdict.answer:
                await audit.record(
                    conn, actor=who, action="refused.stranger",
                    subject=f"update:{update.update_id}",
                    detail={"kind": update.event_type,
                            "refused_quietly": verdict.quietly_before},
                )  # fmt: skip
        # A pressed button spins until answered, so a press always is (a pop-up to the
        # presser, not a message in a chat); a message is answered once per window.
        if update.callback_query is not None:
            await bot.answer_callback_query(update.callback_query.id, REFUSAL, show_alert=True)
        elif update.message is not None and verdict.answer:
            await bot.send_message(update.message.chat.id, REFUSAL)
