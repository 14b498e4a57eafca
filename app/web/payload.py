"""Parsing a webhook body into a JSON object, with its nesting bounded.

`json.loads` recurses once per level and raises RecursionError (not ValueError) about a
thousand levels down; jsonb, pydantic and handlers recurse too. So the depth is measured on
the raw bytes first, and a body nested deeper than any real delivery is refused before it is
parsed. The measure runs at C speed with no object per character (it runs on the event loop:
25 MB of brackets with a valid signature must not hold it for seconds): the bytes are reduced
to their structure (quotes and brackets), and a regular expression that matches groups nested
at most `MAX_DEPTH` deep, without backtracking, skips everything within the bound.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

from app.web.refusal import Refusal

MAX_DEPTH = 64  # GitHub's payloads nest about 10 deep, Telegram's about 6
_STRUCTURE = bytes.maketrans(b"[{]}", b"(())")  # brackets of either kind: one open, one close
_NOT_STRUCTURE = bytes(set(range(256)) - set(b'"[]{}'))
_STRING = r'"[^"]*"'  # a string, once escapes and everything but brackets are gone
_OPEN = ord("(")


def parse_object(body: bytes) -> tuple[dict[str, Any], str]:
    """The payload and its text, or a 400 saying why not."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise Refusal(400, "payload", "the body is not valid UTF-8") from None
    if deeper_than_bound(body):
        raise Refusal(400, "too_deep", f"the body nests deeper than {MAX_DEPTH} levels")
    try:
        payload = json.loads(text)
    except (ValueError, RecursionError):
        raise Refusal(400, "payload", "the body is not valid JSON") from None
    if not isinstance(payload, dict):
        raise Refusal(400, "payload", "the body is not a JSON object")
    return payload, text


def deeper_than_bound(body: bytes) -> bool:
    """Whether the brackets of JSON text nest deeper than MAX_DEPTH, strings aside: exact for
    JSON; for other text, as far as it reads as JSON (which is as far as a parser gets).

    One match skips a body within the bound. Where a match stops at a group it cannot skip,
    the walk goes into that group and skips what fits the depth left there, and so on: past
    the bound within MAX_DEPTH + 1 steps, each a match further along. A match that stops
    anywhere else stopped at text that is not JSON."""
    shape = structure(body)
    at, depth = 0, 0
    while True:
        skipped = _within(MAX_DEPTH - depth).match(shape, at)  # always matches, maybe nothing
        at = skipped.end() if skipped else at
        if at == len(shape) or shape[at] != _OPEN:
            return False
        depth += 1
        if depth > MAX_DEPTH:
            return True
        at += 1


def structure(body: bytes) -> bytes:
    """Quotes and brackets only, brackets as ( and ). Escaped backslashes go first, then
    escaped quotes, so what is left of an escape cannot end a string; UTF-8 never puts these
    ASCII bytes inside a multi-byte character. Two quotes side by side (an empty string, or
    one string's end and the next one's start) go too: every bracket stays inside or outside
    a string as it was, and a body of quotes costs the match nothing."""
    plain = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    return plain.translate(_STRUCTURE, _NOT_STRUCTURE).replace(b'""', b"")


@functools.cache
def _within(depth: int) -> re.Pattern[bytes]:
    """Strings and groups nested at most `depth` deep, as many as follow. Every repeat is
    possessive: brackets leave a match one way to go, so nothing is tried twice."""
    group = ""
    for _ in range(depth):
        group = rf"|\((?:{_STRING}{group})*+\)"
    return re.compile(f"(?:{_STRING}{group})*+".encode())
