"""Honour Telegram's flood control: on 429, wait `retry_after` and send again."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from aiogram.client.session.middlewares.base import BaseRequestMiddleware
from aiogram.exceptions import TelegramRetryAfter

if TYPE_CHECKING:
    from aiogram import Bot
    from aiogram.client.session.middlewares.base import NextRequestMiddlewareType
    from aiogram.methods import TelegramMethod
    from aiogram.methods.base import Response, TelegramType

log = logging.getLogger(__name__)


class RetryAfter(BaseRequestMiddleware):
    def __init__(self, attempts: int = 5, max_wait: float = 60.0) -> None:
        self.attempts = attempts
        self.max_wait = max_wait

    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
    ) -> Response[TelegramType]:
        for attempt in range(1, self.attempts + 1):
            try:
                return await make_request(bot, method)
            except TelegramRetryAfter as exc:
                if attempt == self.attempts or exc.retry_after > self.max_wait:
                    raise
                log.warning(
                    "Telegram asked us to wait %s s (%s)", exc.retry_after, type(method).__name__
                )
                await asyncio.sleep(exc.retry_after)
        raise AssertionError("unreachable")  # pragma: no cover

    def __repr__(self) -> str:
        return f"RetryAfter(attempts={self.attempts})"
