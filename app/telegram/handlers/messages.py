"""Text messages: everything goes to the orchestrator, which owns commands and modes."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.types import Message

from app.orchestrator.orchestrator import Inbound, Orchestrator
from app.telegram.speaker import Speaker


async def on_text(
    message: Message,
    orchestrator: Orchestrator,
    channel: Speaker,
    admin: bool,
    user_name: str,
) -> None:
    assert message.from_user is not None
    assert message.text is not None
    inbound = Inbound(
        conversation=f"tg:{message.chat.id}",
        channel="telegram",
        user=f"tg:{message.from_user.id}",
        user_name=user_name,
        text=message.text,
        admin=admin,
    )
    await channel.send_all(message.chat.id, await orchestrator.handle(inbound))


async def on_other(message: Message) -> None:
    await message.answer("I read text only.")


def build_router() -> Router:
    """A fresh router per Dispatcher: aiogram attaches a router to one parent only."""
    router = Router(name="messages")
    router.message.register(on_text, F.text)
    router.message.register(on_other)
    return router
