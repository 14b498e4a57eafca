"""Text as the full-text index sees it: identifiers split into words, so `DeliveryQueue`,
`defer_mechanic` and `app/deploy/fly.py` are found by "delivery queue", "defer mechanic"
and "deploy fly". Postgres then stems them (`english`) and drops stop words. Pure."""

from __future__ import annotations

import re

_TOKEN = re.compile(r"[A-Za-z][A-Za-z0-9]*|[0-9]+")
_PARTS = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")
CONFIG = "english"  # the text search configuration of every tsvector and tsquery


def searchable(text: str, limit: int = 100_000) -> str:
    """`text`'s words, each identifier also as its parts ("DeliveryQueue delivery queue")."""
    out: list[str] = []
    for token in _TOKEN.findall(text[:limit]):
        out.append(token.lower())
        parts = _PARTS.findall(token)
        if len(parts) > 1:
            out.extend(part.lower() for part in parts)
    return " ".join(out)
