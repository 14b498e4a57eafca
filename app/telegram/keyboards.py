"""Inline keyboards, built by small pure functions."""

from __future__ import annotations

from aiogram.filters.callback_data import CallbackData
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup

from app.orchestrator.approvals import Approval


class ApprovalButton(CallbackData, prefix="ap"):
    """`ap:<approval id>:<choice key>`: well under Telegram's 64 bytes."""

    id: str
    c: str


def approval_keyboard(approval: Approval) -> InlineKeyboardMarkup:
    buttons = [
        InlineKeyboardButton(text=label, callback_data=ApprovalButton(id=approval.id, c=key).pack())
        for key, label in approval.choices
    ]
    return InlineKeyboardMarkup(inline_keyboard=[buttons])


def decided_text(approval: Approval, who: str) -> str:
    if approval.status == "expired":
        return f"{approval.prompt}\n\n⌛ Expired without an answer."
    return f"{approval.prompt}\n\n✅ {approval.label(approval.choice)} — chosen by {who}"
