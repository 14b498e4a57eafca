"""A local OpenAI-compatible chat completions server that replays scripted replies, in
order, and records every request (so a test can see what Aider sent, and to whom)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.support.loopback import serve


@dataclass
class ScriptedLLM:
    replies: list[str]
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    delay: float = 0.0  # seconds before answering (to test timeouts)
    holds: dict[int, float] = field(default_factory=dict)  # request number -> its own delay
    closing: asyncio.Event = field(default_factory=asyncio.Event)  # set to cut a delay short

    def next_reply(self) -> str:
        if not self.replies:
            return "I have nothing more to change."
        return self.replies.pop(0)

    async def completions(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        delay = self.holds.get(len(self.requests), self.delay)
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        if delay:  # a slow model; shutting the server down cuts it short
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.closing.wait(), delay)
        text = self.next_reply()
        usage = {"prompt_tokens": 1000, "completion_tokens": len(text) // 4,
                 "total_tokens": 1000 + len(text) // 4}  # fmt: skip
        created = int(time.time())
        if not body.get("stream"):
            return web.json_response({
                "id": "chatcmpl-scripted", "object": "chat.completion", "created": created,
                "model": body.get("model", "scripted"),
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": text}}],
                "usage": usage,
            })  # fmt: skip
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for piece in (text[i : i + 200] for i in range(0, len(text), 200)):
            delta = {"index": 0, "delta": {"content": piece}, "finish_reason": None}
            chunk = {"id": "chatcmpl-scripted", "object": "chat.completion.chunk",
                     "created": created, "model": body.get("model", "scripted"),
                     "choices": [delta]}  # fmt: skip
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        stop = {"index": 0, "delta": {}, "finish_reason": "stop"}
        last = {"id": "chatcmpl-scripted", "object": "chat.completion.chunk",
                "created": created, "model": body.get("model", "scripted"),
                "choices": [stop], "usage": usage}  # fmt: skip
        await response.write(f"data: {json.dumps(last)}\n\ndata: [DONE]\n\n".encode())
        await response.write_eof()
        return response


@contextmanager
def scripted_llm(replies: list[str]) -> Iterator[tuple[str, ScriptedLLM]]:
    """Yields (api base ending in /v1, the server) on a loopback port."""
    llm = ScriptedLLM(list(replies))
    app = web.Application()
    app.router.add_post("/v1/chat/completions", llm.completions)
    app.router.add_post("/chat/completions", llm.completions)
    with serve(app, before_stop=llm.closing.set) as port:
        yield f"http://127.0.0.1:{port}/v1", llm
