"""A local OpenAI-compatible server: chat completions that replay scripted replies, in
order, recording every request (so a test can see what Aider sent, and to whom), and
embeddings (`/v1/embeddings`) that mean something.

An embedding is a hashed bag of words (`embed`): each word of the text (lower case, with
identifiers split into their snake_case and CamelCase parts besides the whole token) is
hashed with BLAKE2b into one of `dims` buckets with a sign from another bit of the hash, and
the sum is L2-normalised; a text without words gets a fixed unit vector. So texts that share
words are closer (cosine) than texts that do not, the same text always gets the same vector,
and hybrid retrieval can be tested without a model.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import math
import re
import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.support.loopback import serve

EMBEDDING_DIMS = 64
TOKEN = re.compile(r"[A-Za-z0-9_]+")
# The parts of an identifier: "HTTPServer_v2" -> HTTP, Server, v, 2.
PART = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")


def words(text: str) -> list[str]:
    """The words an embedding counts: each token (letters, digits, `_`) in lower case, and,
    when it is an identifier of several parts (snake_case, CamelCase, digits), each part."""
    found = []
    for token in TOKEN.findall(text):
        whole = token.lower()
        found.append(whole)
        parts = [p.lower() for p in PART.findall(token)]
        if parts != [whole]:
            found += parts
    return found


def embed(text: str, dims: int = EMBEDDING_DIMS) -> list[float]:
    """The scripted server's embedding of `text`: a hashed bag of `words`, L2-normalised."""
    vector = [0.0] * dims
    for word in words(text):
        digest = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "big")
        vector[digest % dims] += 1.0 if (digest >> 63) & 1 else -1.0
    norm = math.sqrt(sum(x * x for x in vector))
    if norm == 0:  # no words (or all cancelled out): a fixed unit vector, never zeros
        return [1.0 / math.sqrt(dims)] * dims
    return [x / norm for x in vector]


class BadRequest(Exception):
    pass


@dataclass
class ScriptedLLM:
    replies: list[str]
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    delay: float = 0.0  # seconds before answering (to test timeouts)
    holds: dict[int, float] = field(default_factory=dict)  # request number -> its own delay
    closing: asyncio.Event = field(default_factory=asyncio.Event)  # set to cut a delay short
    # Embeddings: the vectors' length (a request's `dimensions` overrides it), every request's
    # body (failed ones too) and headers, how many texts were embedded, and how many requests
    # to answer with 503 before answering at all.
    embedding_dims: int = EMBEDDING_DIMS
    embedding_requests: list[dict[str, Any]] = field(default_factory=list)
    embedding_headers: list[dict[str, str]] = field(default_factory=list)
    embedded: int = 0
    embedding_failures: int = 0

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

    async def embeddings(self, request: web.Request) -> web.Response:
        """OpenAI's `POST /v1/embeddings`: `input` a string or a list of them (or token
        arrays, each token id counted as a word), `encoding_format` "float" (the default) or
        "base64" (little-endian float32, as OpenAI's client asks by default), `dimensions`
        optional. Missing or empty input is a 400 in OpenAI's shape."""
        try:
            body = await request.json()
        except ValueError:
            return _openai_error(400, "We could not parse the JSON body of your request.")
        if not isinstance(body, dict):
            return _openai_error(400, "The request body must be a JSON object.")
        self.embedding_requests.append(body)
        self.embedding_headers.append(dict(request.headers))
        if self.embedding_failures > 0:
            self.embedding_failures -= 1
            return _openai_error(
                503, "The server is overloaded or not ready yet.", kind="server_error"
            )
        try:
            texts = _texts(body.get("input"))
            dims = body.get("dimensions", self.embedding_dims)
            if not isinstance(dims, int) or isinstance(dims, bool) or dims < 1:
                raise BadRequest("'dimensions' must be a positive integer.")
            encoding = body.get("encoding_format") or "float"
            if encoding not in ("float", "base64"):
                raise BadRequest("'encoding_format' must be 'float' or 'base64'.")
        except BadRequest as exc:
            return _openai_error(400, str(exc))
        data = []
        for index, text in enumerate(texts):
            vector = embed(text, dims)
            encoded: list[float] | str = vector
            if encoding == "base64":
                encoded = base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        self.embedded += len(texts)
        tokens = sum(max(1, len(TOKEN.findall(text))) for text in texts)
        return web.json_response({
            "object": "list", "data": data, "model": body.get("model", "scripted-embedding"),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        })  # fmt: skip


def _texts(value: Any) -> list[str]:
    """The texts of an embeddings `input`, or BadRequest as OpenAI refuses it."""
    if isinstance(value, str):
        value = [value]
    elif isinstance(value, list) and value and all(_is_int(x) for x in value):
        value = [value]  # one token array
    if not isinstance(value, list) or not value:
        raise BadRequest("'input' is a required property and must be a non-empty string or array.")
    texts = []
    for item in value:
        if isinstance(item, list) and item and all(_is_int(x) for x in item):
            texts.append(" ".join(str(x) for x in item))
        elif isinstance(item, str) and item:
            texts.append(item)
        else:
            raise BadRequest(f"'$.input' is invalid: {json.dumps(item)[:80]} is not a text.")
    return texts


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _openai_error(
    status: int, message: str, *, kind: str = "invalid_request_error"
) -> web.Response:
    error = {"message": message, "type": kind, "param": None, "code": None}
    return web.json_response({"error": error}, status=status)


@contextmanager
def scripted_llm(
    replies: list[str], *, embedding_dims: int = EMBEDDING_DIMS, embedding_failures: int = 0
) -> Iterator[tuple[str, ScriptedLLM]]:
    """Yields (api base ending in /v1, the server) on a loopback port."""
    llm = ScriptedLLM(
        list(replies), embedding_dims=embedding_dims, embedding_failures=embedding_failures
    )
    app = web.Application()
    app.router.add_post("/v1/chat/completions", llm.completions)
    app.router.add_post("/chat/completions", llm.completions)
    app.router.add_post("/v1/embeddings", llm.embeddings)
    app.router.add_post("/embeddings", llm.embeddings)
    with serve(app, before_stop=llm.closing.set) as port:
        yield f"http://127.0.0.1:{port}/v1", llm
