"""The scripted model server's embeddings answer as OpenAI's do, and mean something: a hashed
bag of words, so texts sharing words are closer than unrelated ones, always the same."""

from __future__ import annotations

import base64
import math
import struct
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.scripted_llm import ScriptedLLM, embed, scripted_llm, words


@pytest.fixture
def server() -> Iterator[tuple[httpx.Client, ScriptedLLM]]:
    with scripted_llm([]) as (base, llm), httpx.Client(base_url=base, timeout=10) as client:
        yield client, llm


def vectors(client: httpx.Client, texts: str | list[str], **extra: Any) -> list[Any]:
    answer = client.post("/embeddings", json={"model": "embed-small", "input": texts, **extra})
    assert answer.status_code == 200, answer.text
    return [item["embedding"] for item in answer.json()["data"]]


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))  # both are unit vectors


def test_embeddings_answer_in_openais_shape(server: tuple[httpx.Client, ScriptedLLM]) -> None:
    client, llm = server
    answer = client.post(
        "/embeddings",
        json={"model": "embed-small", "input": ["def load_settings", "Hello"],
              "encoding_format": "float"},
        headers={"Authorization": "Bearer sk-test"},
    )  # fmt: skip
    assert answer.status_code == 200
    body = answer.json()
    assert (body["object"], body["model"]) == ("list", "embed-small")
    assert [(d["object"], d["index"]) for d in body["data"]] == [
        ("embedding", 0), ("embedding", 1),
    ]  # fmt: skip
    for item in body["data"]:
        assert len(item["embedding"]) == 64
        assert all(isinstance(x, float) for x in item["embedding"])
        assert math.isclose(math.sqrt(sum(x * x for x in item["embedding"])), 1.0)
    assert body["usage"] == {"prompt_tokens": 3, "total_tokens": 3}
    assert llm.embedding_requests == [
        {"model": "embed-small", "input": ["def load_settings", "Hello"],
         "encoding_format": "float"},
    ]  # fmt: skip
    assert llm.embedding_headers[0]["Authorization"] == "Bearer sk-test"
    assert llm.embedded == 2
    assert llm.requests == []  # chat completions are apart


def test_the_same_text_gets_the_same_vector_on_both_paths(
    server: tuple[httpx.Client, ScriptedLLM],
) -> None:
    client, _ = server
    text = "class WebhookIntake: stores each delivery once"
    (one,) = vectors(client, text)  # a single string
    (two,) = vectors(client, [text])
    bare = client.base_url.copy_with(path="/embeddings")  # without /v1, as some clients ask
    three = client.post(bare, json={"model": "m", "input": text}).json()["data"][0]["embedding"]
    assert one == two == three == embed(text)
    assert embed("LOAD Settings") == embed("load settings")  # lower case throughout
    (packed,) = vectors(client, [text], encoding_format="base64")  # OpenAI's client asks this
    assert isinstance(packed, str)
    decoded = struct.unpack("<64f", base64.b64decode(packed))
    assert all(math.isclose(a, b, rel_tol=1e-6) for a, b in zip(decoded, one, strict=True))


def test_similar_texts_are_closer_than_unrelated_ones(
    server: tuple[httpx.Client, ScriptedLLM],
) -> None:
    client, _ = server
    query, near, far = vectors(
        client,
        [
            "where is the webhook signature verified",
            "def verify_webhook_signature(secret, body, signature): compare the HMAC",
            "Telegram chat buttons render an inline keyboard for approvals",
        ],
    )
    assert cosine(query, near) > cosine(query, far)
    # Identifiers meet their words: CamelCase and snake_case parts count as words.
    camel, snake, prose, other = vectors(
        client, ["PullRequestReview", "pull_request_review", "a pull request review", "deploy"]
    )
    assert cosine(camel, prose) > cosine(camel, other)
    assert cosine(snake, prose) > cosine(snake, other)
    assert words("loadHTTPSettings v2_final") == [
        "loadhttpsettings", "load", "http", "settings", "v2_final", "v", "2", "final",
    ]  # fmt: skip


def test_a_batch_keeps_its_order_and_dimensions_are_set(
    server: tuple[httpx.Client, ScriptedLLM],
) -> None:
    client, llm = server
    texts = [f"chunk number {i} of module_{i}" for i in range(7)]
    assert vectors(client, texts) == [embed(t) for t in texts]
    assert vectors(client, list(reversed(texts))) == [embed(t) for t in reversed(texts)]
    (short,) = vectors(client, "small", dimensions=8)
    assert short == embed("small", 8)
    assert len(short) == 8
    llm.embedding_dims = 16
    assert len(vectors(client, "small")[0]) == 16
    # No words at all: a fixed unit vector, never zeros.
    blank, symbols = vectors(client, ["   ", "?!"])
    assert blank == symbols == [0.25] * 16
    assert llm.embedded == 7 + 7 + 1 + 1 + 2


@pytest.mark.parametrize(
    "body",
    [
        {"model": "m"},
        {"model": "m", "input": ""},
        {"model": "m", "input": []},
        {"model": "m", "input": ["fine", ""]},
        {"model": "m", "input": ["fine", 3.5]},
        {"model": "m", "input": {"text": "no"}},
        {"model": "m", "input": "x", "encoding_format": "int8"},
    ],
)
def test_bad_input_is_refused_as_openai_does(
    server: tuple[httpx.Client, ScriptedLLM], body: dict[str, Any]
) -> None:
    client, llm = server
    answer = client.post("/embeddings", json=body)
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"]
    assert llm.embedded == 0
    not_json = client.post("/embeddings", content=b"{", headers={"Content-Type": "text/plain"})
    assert not_json.status_code == 400


def test_failures_come_first_then_answers(server: tuple[httpx.Client, ScriptedLLM]) -> None:
    client, llm = server
    llm.embedding_failures = 2
    for _ in range(2):
        refused = client.post("/embeddings", json={"model": "m", "input": ["a", "b"]})
        assert refused.status_code == 503
        assert refused.json()["error"]["type"] == "server_error"
    assert llm.embedded == 0
    assert vectors(client, ["a", "b"]) == [embed("a"), embed("b")]
    assert (llm.embedding_failures, llm.embedded, len(llm.embedding_requests)) == (0, 2, 3)


def test_counters_show_what_was_embedded_again() -> None:
    with (
        scripted_llm([], embedding_dims=32, embedding_failures=1) as (base, llm),
        httpx.Client(base_url=base, timeout=10) as client,
    ):
        assert client.post("/embeddings", json={"model": "m", "input": "x"}).status_code == 503
        first = vectors(client, ["alpha", "beta", "gamma"])
        changed = vectors(client, ["beta v2"])  # only the changed chunk is sent again
        assert len(first[0]) == len(changed[0]) == 32
        assert llm.embedded == 4
        assert [r["input"] for r in llm.embedding_requests] == [
            "x", ["alpha", "beta", "gamma"], ["beta v2"],
        ]  # fmt: skip
        tokens = client.post("/embeddings", json={"model": "m", "input": [[101, 2023], [7]]})
        assert tokens.status_code == 200  # token arrays, as some clients send them
        assert tokens.json()["data"][0]["embedding"] == embed("101 2023", 32)
        assert llm.embedded == 6


def test_chat_completions_still_answer_in_order() -> None:
    with scripted_llm(["one", "two"]) as (base, llm), httpx.Client(base_url=base) as client:
        said = [
            client.post("/chat/completions", json={"model": "m", "messages": []}).json()
            for _ in range(3)
        ]
    assert [s["choices"][0]["message"]["content"] for s in said] == [
        "one", "two", "I have nothing more to change.",
    ]  # fmt: skip
    assert len(llm.requests) == 3
    assert llm.embedding_requests == []
