"""`ping`: GitHub's hello when a webhook is created. We log which hook said it."""

from __future__ import annotations

import logging

from app.routing import Context, Event, Router

router = Router()
log = logging.getLogger(__name__)


@router.register("ping")
async def ping(event: Event, ctx: Context) -> None:
    hook = event.payload.get("hook") or {}
    log.info(
        "ping from hook %s (%s): %s", hook.get("id"), hook.get("type"), event.payload.get("zen")
    )
