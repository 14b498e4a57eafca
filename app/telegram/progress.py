"""One progress message, edited in place: at most one edit a second per chat, identical
text never re-sent (Telegram answers that with a 400), the latest text always shown."""

from __future__ import annotations

import asyncio
import time

from aiogram import Bot


class Progress:
    def __init__(self, bot: Bot, chat_id: int, min_interval: float = 1.0) -> None:
        self.bot = bot
        self.chat_id = chat_id
        self.min_interval = min_interval
        self.message_id: int | None = None
        self._shown = ""
        self._wanted = ""
        self._last = 0.0
        self._lock = asyncio.Lock()

    async def update(self, text: str) -> None:
        self._wanted = text
        async with self._lock:
            if self._wanted == self._shown:
                return
            wait = self._last + self.min_interval - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            text = self._wanted  # newer updates that came while we waited replace older ones
            if text == self._shown:
                return
            if self.message_id is None:
                sent = await self.bot.send_message(self.chat_id, text)
                self.message_id = sent.message_id
            else:
                await self.bot.edit_message_text(
                    text=text, chat_id=self.chat_id, message_id=self.message_id
                )
            self._shown = text
            self._last = time.monotonic()
