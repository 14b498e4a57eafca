"""Who is looking at the console: one-time login links, server-side sessions, CSRF tokens.

- A **login link** (`persais console-link`) carries a random token; the database keeps only
  its hash. It works once, within `LINK_SECONDS`, and becomes a session.
- A **session** is a random cookie value (HttpOnly, SameSite=Lax, Secure over https); the
  database keeps its hash, who it is, their role, and the CSRF token every action must carry.
- Nothing here trusts the request's own claims: a session is only what the table says.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from psycopg import AsyncConnection

Role = Literal["admin", "reader"]
LINK_SECONDS = 600  # a login link is good for 10 minutes, once
SESSION_HOURS = 12
COOKIE = "persais_console"


@dataclass(frozen=True)
class Viewer:
    """The person behind a request: `person` as the audit log names people ('cli:ada',
    'github:octocat'), and what they may do."""

    person: str
    role: Role
    csrf: str
    session: bytes  # the session's hash: its row

    @property
    def admin(self) -> bool:
        return self.role == "admin"

    def csrf_ok(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), self.csrf.encode())


def digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


async def new_link(
    conn: AsyncConnection[Any], person: str, role: Role, *, seconds: int = LINK_SECONDS
) -> str:
    """A one-time login token for `person`; only its hash is stored."""
    token = secrets.token_urlsafe(32)
    await conn.execute(
        "INSERT INTO console_links (token_hash, person, role, expires_at)"
        " VALUES (%s, %s, %s, now() + %s)",
        (digest(token), person, role, timedelta(seconds=seconds)),
    )
    return token


class LinkRefused(Exception):
    """The link is unknown, used already, or expired; the message says which."""


async def use_link(conn: AsyncConnection[Any], token: str) -> tuple[str, Role]:
    """Spend a login link (once, atomically): who it logs in, and as what."""
    async with conn.transaction():
        cur = await conn.execute(
            "UPDATE console_links SET used_at = now()"
            " WHERE token_hash = %s AND used_at IS NULL AND expires_at > now()"
            " RETURNING person, role",
            (digest(token),),
        )
        row = await cur.fetchone()
        if row is not None:
            return str(row[0]), row[1]
        cur = await conn.execute(
            "SELECT used_at IS NOT NULL FROM console_links WHERE token_hash = %s", (digest(token),)
        )
        known = await cur.fetchone()
    if known is None:
        raise LinkRefused("This login link is not known. Ask for a new one: persais console-link")
    if known[0]:
        raise LinkRefused("This login link was used already. Ask for a new one.")
    raise LinkRefused("This login link has expired (links last 10 minutes). Ask for a new one.")


async def open_session(
    conn: AsyncConnection[Any], person: str, role: Role, *, via: str, hours: int = SESSION_HOURS
) -> str:
    """A new session; the cookie's value (only its hash is stored)."""
    value = secrets.token_urlsafe(32)
    await conn.execute(
        "INSERT INTO console_sessions (id_hash, person, role, csrf, via, expires_at)"
        " VALUES (%s, %s, %s, %s, %s, now() + %s)",
        (digest(value), person, role, secrets.token_urlsafe(24), via, timedelta(hours=hours)),
    )
    # Old rows go as new ones come: the tables stay the size of who is logged in.
    await conn.execute("DELETE FROM console_sessions WHERE expires_at < now()")
    await conn.execute("DELETE FROM console_links WHERE expires_at < now() - interval '1 day'")
    return value


async def viewer(conn: AsyncConnection[Any], cookie: str | None) -> Viewer | None:
    """The session a cookie names, if it is live."""
    if not cookie or len(cookie) > 200:
        return None
    cur = await conn.execute(
        "UPDATE console_sessions SET last_seen_at = now()"
        " WHERE id_hash = %s AND expires_at > now() RETURNING person, role, csrf, id_hash",
        (digest(cookie),),
    )
    row = await cur.fetchone()
    if row is None:
        return None
    return Viewer(person=str(row[0]), role=row[1], csrf=str(row[2]), session=bytes(row[3]))


async def close_session(conn: AsyncConnection[Any], session: bytes) -> None:
    await conn.execute("DELETE FROM console_sessions WHERE id_hash = %s", (session,))
