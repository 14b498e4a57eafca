"""The agent host protocol: newline-delimited JSON over the host's stdin and stdout.

Every frame is one JSON object on one line, at most `MAX_FRAME` bytes, carrying `v`
(`VERSION`). Requests carry an `id` and an `op`; the answer to a request carries the same
`id` and either `result` or `error`. Both sides send requests:

    core → host   load, activate, handle, on_choice, deactivate
    host → core   call (a capability: state, http, modbus)
    host → core   hello (once, unasked, when the host is up)

The core trusts nothing a host sends: a frame that is too long, not JSON, not an object, of
another version, or an answer to nothing, is a breach of the protocol and the host is killed.
This module is stdlib only: the host imports it inside its sandbox.
"""

from __future__ import annotations

import json
from typing import Any

VERSION = 1
MAX_FRAME = 1 << 20  # 1 MiB a line, either way
CORE_OPS = frozenset({"load", "activate", "handle", "on_choice", "deactivate"})
HOST_OPS = frozenset({"hello", "call"})


class ProtocolError(Exception):
    """The other side broke the protocol."""


def encode(frame: dict[str, Any]) -> bytes:
    data = json.dumps({"v": VERSION, **frame}, separators=(",", ":"), ensure_ascii=False)
    raw = data.encode() + b"\n"
    if len(raw) > MAX_FRAME:
        raise ProtocolError(f"frame of {len(raw)} bytes is over the {MAX_FRAME} byte cap")
    return raw


def decode(line: bytes) -> dict[str, Any]:
    if len(line) > MAX_FRAME:
        raise ProtocolError(f"frame of {len(line)} bytes is over the {MAX_FRAME} byte cap")
    try:
        frame = json.loads(line)
    except (ValueError, RecursionError):
        raise ProtocolError("a frame that is not JSON") from None
    if not isinstance(frame, dict):
        raise ProtocolError("a frame that is not a JSON object")
    if frame.get("v") != VERSION:
        raise ProtocolError(f"protocol version {frame.get('v')!r}, expected {VERSION}")
    return frame


def request(ident: int | str, op: str, **args: Any) -> dict[str, Any]:
    return {"id": ident, "op": op, "args": args}


def result(ident: int | str, value: Any) -> dict[str, Any]:
    return {"id": ident, "result": value}


def error(ident: int | str, kind: str, message: str, trace: str = "") -> dict[str, Any]:
    """`kind`: 'denied' (a grant refused it), 'failed' (it went wrong), 'protocol'."""
    frame: dict[str, Any] = {"id": ident, "error": {"kind": kind, "message": message[:2000]}}
    if trace:
        frame["error"]["traceback"] = trace[-8000:]
    return frame
