"""What a handler may do in a chat, beyond answering the update it was given: send the
orchestrator's replies, and show a question as decided.

`TelegramChannel` is one; the handlers name this protocol, never the channel, so the
channel can import its handlers and nothing imports back (aiogram hands the channel to a
handler by its parameter name, `channel`).
"""

from __future__ import annotations

from typing import Protocol

from app.orchestrator.approvals import Approval
from app.orchestrator.orchestrator import Outbound


class Speaker(Protocol):
    async def send_all(self, chat_id: int, replies: list[Outbound]) -> None: ...

    async def show_decided(self, approval: Approval, who: str) -> None: ...
