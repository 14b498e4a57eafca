"""Pure text shaping for Telegram's limits."""

from __future__ import annotations

LIMIT = 4096  # characters in one message


def split_message(text: str, limit: int = LIMIT) -> list[str]:
    """Split at line boundaries into messages of at most `limit` characters; a single
    line longer than that is cut hard."""
    if len(text) <= limit:
        return [text]
    parts: list[str] = []
    current = ""
    for line in text.splitlines(keepends=True):
        while len(line) > limit:
            if current:
                parts.append(current)
                current = ""
            parts.append(line[:limit])
            line = line[limit:]
        if len(current) + len(line) > limit:
            parts.append(current)
            current = ""
        current += line
    if current:
        parts.append(current)
    return [part.rstrip("\n") or part for part in parts]
