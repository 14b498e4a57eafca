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
    buttons = []
    for key, label, *link in approval.choices:
        if link and link[0].startswith(("https://", "http://")):
            buttons.append(InlineKeyboardButton(text=label, url=link[0]))
        else:  # a choice, or a link Telegram cannot open (the local forge): we answer it
            data = ApprovalButton(id=approval.id, c=key).pack()
            buttons.append(InlineKeyboardButton(text=label, callback_data=data))
    return InlineKeyboardMarkup(inline_keyboard=[buttons])


def link_keyboard(links: list[list[str]] | None) -> InlineKeyboardMarkup | None:
    """URL buttons (only addresses Telegram can open); None when there are none."""
    buttons = [
        InlineKeyboardButton(text=label, url=url)
        for label, url in links or []
        if url.startswith(("https://", "http://"))
    ]
    return InlineKeyboardMarkup(inline_keyboard=[buttons]) if buttons else None
