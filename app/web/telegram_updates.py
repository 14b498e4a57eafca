"""What the Telegram door lets in: the update kinds Persais reads, in the shape it reads.

An update of any other kind is acknowledged and dropped (Telegram stops resending on a 2xx);
one of a kind Persais reads but in a shape the Bot API never sends is refused (400). Only
the fields the handlers rely on are checked here; aiogram validates the rest in the worker,
which drops what it cannot read.
"""

from __future__ import annotations

from typing import Any

from app.inbox import Delivery
from app.telegram.kinds import READ_KINDS
from app.web.refusal import Refusal


def update_id_of(update: dict[str, Any]) -> int:
    """The update's id (its delivery id, and the poller's offset); a 400 `Refusal` if it
    has none a Bot API would send."""
    update_id = update.get("update_id")
    if not isinstance(update_id, int) or isinstance(update_id, bool) or update_id < 0:
        raise Refusal(400, "payload", "the update has no integer update_id")
    return update_id


def delivery(bot_id: int, update_id: int, update: dict[str, Any], body: str) -> Delivery:
    """The inbox row of an update read through either door (webhook or polling), checked
    by `update_id_of` and `unread_kind` first."""
    return Delivery(
        source="telegram",
        delivery_id=f"{bot_id}:{update_id}",
        event=next(key for key in update if key != "update_id"),
        action=None,
        body=body,
        lock=telegram_chat(update),
    )


def telegram_chat(update: dict[str, Any]) -> str | None:
    """The chat an update belongs to: its updates must be handled in order, one at a time."""
    for kind in ("message", "edited_message", "callback_query"):
        event = update.get(kind)
        if isinstance(event, dict):
            message = event.get("message", event) if kind == "callback_query" else event
            chat = message.get("chat") if isinstance(message, dict) else None
            if isinstance(chat, dict) and isinstance(chat.get("id"), int):
                return f"tg:{chat['id']}"
    return None


def unread_kind(update: dict[str, Any]) -> str | None:
    """The kind of an update Persais does not read (to drop), or None if it reads it.
    Raises a 400 `Refusal` for a malformed update."""
    kinds = [key for key in update if key != "update_id"]
    if len(kinds) != 1:
        raise Refusal(400, "payload", "an update carries exactly one event")
    kind = kinds[0]
    if kind not in READ_KINDS:
        return kind
    event = update[kind]
    if not isinstance(event, dict):
        raise Refusal(400, "payload", f"{kind} is not an object")
    if kind == "message":
        _check_message(event, "message")
    else:
        _require(isinstance(event.get("id"), str), "callback_query.id is not a string")
        _check_user(event.get("from"), "callback_query.from", required=True)
        _require(_optional(event, "data", str), "callback_query.data is not a string")
        if event.get("message") is not None:
            message = event["message"]
            _require(isinstance(message, dict), "callback_query.message is not an object")
            _check_message(message, "callback_query.message")
    return None


def _check_message(message: dict[str, Any], where: str) -> None:
    chat = message.get("chat")
    _require(isinstance(chat, dict) and _is_int(chat.get("id")), f"{where}.chat.id is missing")
    _check_user(message.get("from"), f"{where}.from", required=False)
    _require(_optional(message, "text", str), f"{where}.text is not a string")


def _check_user(user: object, where: str, *, required: bool) -> None:
    if user is None and not required:
        return
    _require(isinstance(user, dict) and _is_int(user.get("id")), f"{where}.id is missing")


def _optional(event: dict[str, Any], key: str, kind: type) -> bool:
    return event.get(key) is None or isinstance(event[key], kind)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise Refusal(400, "payload", message)
