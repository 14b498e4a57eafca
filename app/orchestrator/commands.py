"""Reading a chat line: `/command@bot rest` → ("command", "rest")."""

from __future__ import annotations

import re

_COMMAND = re.compile(r"^/([A-Za-z][A-Za-z0-9_]{0,31})(?:@[A-Za-z0-9_]+)?(?:\s+(.*))?$", re.S)


def parse(text: str) -> tuple[str | None, str]:
    """The command (lower-cased) and the rest; (None, text) when it is not a command."""
    match = _COMMAND.match(text.strip())
    if match is None:
        return None, text.strip()
    return match.group(1).lower(), (match.group(2) or "").strip()
