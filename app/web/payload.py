"""Parsing a webhook body into a JSON object, with its nesting bounded.

`json.loads` recurses once per level and raises RecursionError (not ValueError) about a
thousand levels down; jsonb, pydantic and handlers recurse too. So the depth is measured on
the raw text first, with C-speed passes, and a body nested deeper than any real delivery is
refused before it is parsed.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any

from app.web.refusal import Refusal

MAX_DEPTH = 64  # GitHub's payloads nest about 10 deep, Telegram's about 6
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def parse_object(body: bytes) -> tuple[dict[str, Any], str]:
    """The payload and its text, or a 400 saying why not."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise Refusal(400, "payload", "the body is not valid UTF-8") from None
    if nesting(text) > MAX_DEPTH:
        raise Refusal(400, "too_deep", f"the body nests deeper than {MAX_DEPTH} levels")
    try:
        payload = json.loads(text)
    except (ValueError, RecursionError):
        raise Refusal(400, "payload", "the body is not valid JSON") from None
    if not isinstance(payload, dict):
        raise Refusal(400, "payload", "the body is not a JSON object")
    return payload, text


def nesting(text: str) -> int:
    """How deep the brackets of JSON text go, strings aside (exact for valid JSON)."""
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0)
