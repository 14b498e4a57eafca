"""The approvals table: short ids for questions, and an atomic first-press-wins decision."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"  # no 0/o, 1/l: ids are read by people too


def new_id() -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(10))


@dataclass(frozen=True)
class Approval:
    id: str
    conversation: str
    agent: str
    question: str
    prompt: str
    choices: list[list[str]]  # [[key, label], ...]; [key, label, url] for a link
    requested_by: str
    status: str
    choice: str | None
    decided_by: str | None
    decided_at: datetime | None
    delivered_at: datetime | None
    channel_ref: dict[str, Any] | None
    created_at: datetime
    expires_at: datetime
    decided_via: str | None = None  # the surface that answered: telegram, terminal, console…

    def label(self, key: str | None) -> str:
        return next((c[1] for c in self.choices if c[0] == key), key or "")

    def link(self, key: str) -> str | None:
        """The address of a link choice (it decides nothing), else None."""
        return next((c[2] for c in self.choices if c[0] == key and len(c) > 2), None)


_COLUMNS = (
    "id, conversation, agent, question, prompt, choices, requested_by, status, choice,"
    " decided_by, decided_at, delivered_at, channel_ref, created_at, expires_at, decided_via"
)


async def create(
    conn: AsyncConnection[Any],
    *,
    conversation: str,
    agent: str,
    question: str,
    prompt: str,
    choices: list[list[str]],
    requested_by: str,
    timeout_seconds: float,
) -> Approval:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        f"INSERT INTO approvals (id, conversation, agent, question, prompt, choices,"
        f" requested_by, expires_at) VALUES (%s, %s, %s, %s, %s, %s, %s,"
        f" now() + make_interval(secs => %s)) RETURNING {_COLUMNS}",
        (new_id(), conversation, agent, question, prompt, Jsonb(choices), requested_by,
         timeout_seconds),
    )  # fmt: skip
    row = await cur.fetchone()
    assert row is not None
    return Approval(**row)


async def get(conn: AsyncConnection[Any], approval_id: str) -> Approval | None:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(f"SELECT {_COLUMNS} FROM approvals WHERE id = %s", (approval_id,))
    row = await cur.fetchone()
    return None if row is None else Approval(**row)


async def decide(
    conn: AsyncConnection[Any],
    approval_id: str,
    choice: str,
    by: str,
    *,
    admin: bool = False,
    via: str | None = None,
) -> Approval | None:
    """Record the decision (whether `by` answered as an admin, and from which surface) if
    the question is still open; None when someone was first."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        f"UPDATE approvals SET status = 'decided', choice = %s, decided_by = %s,"
        f" decided_by_admin = %s, decided_via = %s, decided_at = now()"
        f" WHERE id = %s AND status = 'pending' AND expires_at > now() RETURNING {_COLUMNS}",
        (choice, by, admin, via, approval_id),
    )
    row = await cur.fetchone()
    return None if row is None else Approval(**row)


async def expire_due(conn: AsyncConnection[Any]) -> list[Approval]:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        f"UPDATE approvals SET status = 'expired', decided_at = now()"
        f" WHERE status = 'pending' AND expires_at <= now() RETURNING {_COLUMNS}"
    )
    return [Approval(**row) for row in await cur.fetchall()]


async def undelivered(conn: AsyncConnection[Any], older_than_seconds: float) -> list[Approval]:
    """Decisions recorded but never handed to the agent (a crash in between)."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        f"SELECT {_COLUMNS} FROM approvals WHERE status <> 'pending' AND delivered_at IS NULL"
        f" AND decided_at < now() - make_interval(secs => %s)",
        (older_than_seconds,),
    )
    return [Approval(**row) for row in await cur.fetchall()]


async def mark_delivered(conn: AsyncConnection[Any], approval_id: str) -> None:
    await conn.execute("UPDATE approvals SET delivered_at = now() WHERE id = %s", (approval_id,))


async def set_channel_ref(
    conn: AsyncConnection[Any], approval_id: str, ref: dict[str, Any]
) -> None:
    await conn.execute(
        "UPDATE approvals SET channel_ref = %s WHERE id = %s", (Jsonb(ref), approval_id)
    )


async def pending_in(conn: AsyncConnection[Any], conversation: str) -> list[Approval]:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        f"SELECT {_COLUMNS} FROM approvals WHERE conversation = %s AND status = 'pending'"
        " ORDER BY created_at",
        (conversation,),
    )
    return [Approval(**row) for row in await cur.fetchall()]


async def pending_count(conn: AsyncConnection[Any]) -> int:
    cur = await conn.execute("SELECT count(*) FROM approvals WHERE status = 'pending'")
    row = await cur.fetchone()
    return 0 if row is None else int(row[0])


async def open_ones(conn: AsyncConnection[Any], *, limit: int = 50) -> list[Approval]:
    """The questions still waiting for an answer, newest first (the console lists them)."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        f"SELECT {_COLUMNS} FROM approvals WHERE status = 'pending' AND expires_at > now()"
        " ORDER BY created_at DESC LIMIT %s",
        (limit,),
    )
    return [Approval(**row) for row in await cur.fetchall()]


async def recently_closed(conn: AsyncConnection[Any], *, limit: int = 20) -> list[Approval]:
    """The questions answered or expired most recently, newest first."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        f"SELECT {_COLUMNS} FROM approvals WHERE status <> 'pending'"
        " ORDER BY decided_at DESC LIMIT %s",
        (limit,),
    )
    return [Approval(**row) for row in await cur.fetchall()]


def surface_of(person: str) -> str | None:
    """The surface a person's answer came from, by how they are named ('tg:42' answers in
    Telegram); None when the name does not say (the console names its surface itself)."""
    prefix = person.partition(":")[0]
    return {"tg": "telegram", "cli": "terminal", "github": "github"}.get(prefix)


def decided_text(question: Approval, who: str) -> str:
    """The question as a chat shows it once closed: who chose what, or that it expired."""
    if question.status == "expired":
        return f"{question.prompt}\n\n⌛ Expired without an answer."
    return f"{question.prompt}\n\n✅ {question.label(question.choice)} — chosen by {who}"
