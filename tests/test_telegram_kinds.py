"""The kinds of update Persais reads (`app.telegram.kinds`) are exactly the kinds the
channel's routers handle. A router for another kind would never be fed (Telegram is not
asked for it and the door drops it); a kind read with no router would be acknowledged and
then fall through every handler."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, cast

from psycopg_pool import AsyncConnectionPool

from app.telegram.channel import TelegramChannel
from app.telegram.kinds import READ_KINDS
from app.web import telegram_updates
from tests.support.config import make_settings


def test_the_kinds_persais_reads_are_the_kinds_its_routers_handle(tmp_path: Path) -> None:
    async def routed() -> list[str]:
        pool = AsyncConnectionPool("", open=False)  # never opened: building it is no I/O
        channel = TelegramChannel(make_settings(tmp_path, None), pool, cast(Any, None))
        try:
            return channel.dispatcher.resolve_used_update_types()
        finally:
            await channel.close()

    assert sorted(asyncio.run(routed())) == sorted(READ_KINDS)
    assert telegram_updates.READ_KINDS is READ_KINDS  # the door reads the same list
