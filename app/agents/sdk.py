"""What a dynamic agent holds in its hands: thin stubs of the capabilities the core serves.

`ctx.capability("state")`, `ctx.capability("http")` and `ctx.capability("modbus")` return
these. Each method is one call to the core (`Call`), which checks the agent's grant, does
the work and answers with plain JSON. Nothing here opens a socket or a file: in a host,
`Call` is a protocol frame; in a generated test, it is the same broker in the test's process.

Also here: messages and replies as JSON, the shape they cross the protocol in, checked on
the way back so an agent cannot hand the core a reply it could not have made.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from app.agents.base import AgentContext, Choice, Message, Reply

Call = Callable[[str, str, dict[str, Any]], Awaitable[Any]]  # (capability, method, args)

MAX_REPLY_TEXT = 16_384
MAX_CHOICES = 12


class CapabilityError(RuntimeError):
    """The core tried and it did not work (a device that does not answer, a 404 is not one)."""


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: dict[str, str]
    text: str

    def json(self) -> Any:
        return json.loads(self.text)


class State:
    """The agent's own key-value store (JSON values), kept by the core in Postgres."""

    def __init__(self, call: Call) -> None:
        self._call = call

    async def get(self, key: str, default: Any = None) -> Any:
        found = await self._call("state", "get", {"key": key})
        return default if found is None else found["value"]

    async def set(self, key: str, value: Any) -> None:
        await self._call("state", "set", {"key": key, "value": value})

    async def delete(self, key: str) -> None:
        await self._call("state", "delete", {"key": key})

    async def keys(self) -> list[str]:
        return list(await self._call("state", "keys", {}))


class Http:
    """HTTP(S) requests the core makes, only to the hosts the grant lists."""

    def __init__(self, call: Call) -> None:
        self._call = call

    async def request(
        self, method: str, url: str, *, headers: dict[str, str] | None = None,
        body: str | None = None, json_body: Any = None,
    ) -> HttpResponse:  # fmt: skip
        if json_body is not None:
            body = json.dumps(json_body)
            headers = {"content-type": "application/json", **(headers or {})}
        answer = await self._call(
            "http",
            "request",
            {"method": method, "url": url, "headers": headers or {}, "body": body},
        )
        return HttpResponse(int(answer["status"]), dict(answer["headers"]), str(answer["text"]))

    async def get(self, url: str, *, headers: dict[str, str] | None = None) -> HttpResponse:
        return await self.request("GET", url, headers=headers)

    async def post(self, url: str, *, json_body: Any = None) -> HttpResponse:
        return await self.request("POST", url, json_body=json_body)


class Modbus:
    """Modbus TCP the core speaks, only to the devices the grant lists (by their name)."""

    def __init__(self, call: Call) -> None:
        self._call = call

    async def read_holding(
        self, device: str, address: int, count: int = 1, *, unit: int | None = None
    ) -> list[int]:
        args = {"device": device, "address": address, "count": count, "unit": unit}
        return [int(v) for v in await self._call("modbus", "read_holding", args)]

    async def write_register(
        self, device: str, address: int, value: int, *, unit: int | None = None
    ) -> None:
        args = {"device": device, "address": address, "values": [value], "unit": unit}
        await self._call("modbus", "write_registers", args)

    async def write_registers(
        self, device: str, address: int, values: list[int], *, unit: int | None = None
    ) -> None:
        args = {"device": device, "address": address, "values": values, "unit": unit}
        await self._call("modbus", "write_registers", args)


STUBS: dict[str, Callable[[Call], object]] = {"state": State, "http": Http, "modbus": Modbus}


def context(agent: str, permissions: frozenset[str], call: Call) -> AgentContext:
    """An agent's context whose capabilities are stubs over `call`. The core checks every
    call against the grant again: what a stub allows proves nothing."""
    stubs = {name: STUBS[name](call) for name in permissions if name in STUBS}
    return AgentContext(agent, permissions, logging.getLogger(f"agent.{agent}"), stubs)


def message_to_json(message: Message) -> dict[str, Any]:
    return {
        "text": message.text, "user": message.user, "user_name": message.user_name,
        "conversation": message.conversation, "command": message.command,
        "admin": message.admin,
    }  # fmt: skip


def message_from_json(data: dict[str, Any]) -> Message:
    return Message(
        text=str(data["text"]), user=str(data["user"]), user_name=str(data["user_name"]),
        conversation=str(data["conversation"]),
        command=None if data.get("command") is None else str(data["command"]),
        admin=bool(data.get("admin")),
    )  # fmt: skip


def reply_to_json(reply: Reply | str) -> dict[str, Any]:
    if not isinstance(reply, Reply):
        reply = Reply(text=str(reply))
    return {
        "text": reply.text,
        "choices": [[c.key, c.label, c.url] for c in reply.choices],
        "question": reply.question,
    }


class BadReply(ValueError):
    pass


def reply_from_json(data: Any) -> Reply:
    """A reply from a host, checked: a string text within its cap, a few short choices."""
    if not isinstance(data, dict) or not isinstance(data.get("text"), str):
        raise BadReply("a reply without text")
    text = data["text"]
    if len(text) > MAX_REPLY_TEXT:
        raise BadReply(f"a reply of {len(text)} characters (the cap is {MAX_REPLY_TEXT})")
    raw = data.get("choices") or []
    if not isinstance(raw, list) or len(raw) > MAX_CHOICES:
        raise BadReply("a reply with too many choices")
    choices = []
    for item in raw:
        if not (
            isinstance(item, list) and len(item) == 3 and all(isinstance(x, str) for x in item)
        ):
            raise BadReply("a malformed choice")
        key, label, url = item
        if not key or len(key) > 32 or len(label) > 64 or len(url) > 500:
            raise BadReply("a choice over its size")
        if url and not url.startswith(("https://", "http://")):
            raise BadReply("a choice linking to something that is not a web address")
        choices.append(Choice(key, label, url))
    question = data.get("question", "")
    if not isinstance(question, str) or len(question) > 64:
        raise BadReply("a malformed question name")
    return Reply(text=text, choices=tuple(choices), question=question)
