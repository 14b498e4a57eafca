"""Button presses: answered at once, first press wins, then the question shows who decided."""

from __future__ import annotations

from aiogram import Router
from aiogram.types import CallbackQuery

from app.orchestrator.orchestrator import Orchestrator
from app.telegram.keyboards import ApprovalButton
from app.telegram.speaker import Speaker


async def on_press(
    query: CallbackQuery,
    callback_data: ApprovalButton,
    orchestrator: Orchestrator,
    channel: Speaker,
    admin: bool,
    user_name: str,
) -> None:
    claimed = await orchestrator.claim(
        callback_data.id, callback_data.c, user=f"tg:{query.from_user.id}", admin=admin
    )
    await query.answer(claimed.notice[:200], show_alert=not claimed.ok or claimed.link)
    if not claimed.ok or claimed.approval is None:
        return
    await channel.show_decided(claimed.approval, user_name)
    delivered = await orchestrator.deliver(claimed)
    chat_id = int(claimed.approval.conversation.removeprefix("tg:"))
    await channel.send_all(chat_id, delivered.outbound)


async def on_unknown_press(query: CallbackQuery) -> None:
    await query.answer("This button is no longer in use.", show_alert=True)


def build_router() -> Router:
    """A fresh router per Dispatcher: aiogram attaches a router to one parent only."""
    router = Router(name="callbacks")
    router.callback_query.register(on_press, ApprovalButton.filter())
    router.callback_query.register(on_unknown_press)
    return router
