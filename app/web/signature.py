"""Sender verification, as pure functions over bytes."""

from __future__ import annotations

import hashlib
import hmac


def github_signature(secret: bytes, body: bytes | list[bytes]) -> str:
    """The `X-Hub-Signature-256` value GitHub sends for `body` (whole, or in its chunks)."""
    mac = hmac.new(secret, digestmod=hashlib.sha256)
    for part in [body] if isinstance(body, bytes) else body:
        mac.update(part)
    return "sha256=" + mac.hexdigest()


def verify_github(secret: bytes, body: bytes | list[bytes], header: str | None) -> bool:
    """Constant-time check of `X-Hub-Signature-256` over the raw body."""
    if not secret or not header:
        return False
    return hmac.compare_digest(github_signature(secret, body).encode(), header.encode())


def verify_telegram(secret: bytes, header: str | None) -> bool:
    """Constant-time check of `X-Telegram-Bot-Api-Secret-Token`."""
    if not secret or not header:
        return False
    return hmac.compare_digest(secret, header.encode())
