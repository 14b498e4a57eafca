"""Bodies no webhook may choke on: nesting past the bound, a declared length over the cap,
and more unverified bytes in flight than the budget allows."""

from __future__ import annotations

import json
import random
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from app.settings import Settings
from app.web.payload import MAX_DEPTH, deeper_than_bound
from app.web.signature import github_signature
from app.web.webhooks import GITHUB_MAX_BODY
from tests.support.config import make_settings
from tests.support.server import client_for, running_server
from tests.support.waiting import wait_for
from tests.support.webhooks import TELEGRAM_SECRET, example, github_headers, telegram_update


@pytest.fixture
def client(settings: Settings, database: str) -> Iterator[httpx.Client]:
    with running_server(settings, database, worker=False) as (url, _), client_for(url) as http:
        yield http


def deep(levels: int, kind: str) -> str:
    if kind == "array":
        return "[" * levels + "]" * levels
    return '{"a":' * levels + "1" + "}" * levels


AT_BOUND = deep(MAX_DEPTH - 1, "array")  # inside one more: at the bound


@pytest.mark.parametrize(
    ("text", "too_deep"),
    [
        (deep(MAX_DEPTH, "array"), False),
        (deep(MAX_DEPTH + 1, "object"), True),
        ("[" + ",".join([AT_BOUND] * 3) + "]", False),  # siblings at the bound
        ("[" + ",".join([AT_BOUND] * 3 + [deep(MAX_DEPTH, "object")]) + "]", True),
        ('{"a": "' + "[" * 100 + '"}', False),  # brackets in a string
        ('{"a": "\\"' + "[" * 100 + '"}', False),  # after an escaped quote
        ('{"a\\"[[": "\\\\", "b": ' + AT_BOUND + "}", False),
        ('{"a": "\\\\", "b": ' + deep(MAX_DEPTH, "array") + "}", True),
        ('{"a": "\\u005b\\u007b", "b": "\\\\\\""}', False),
        ("]" * 10 + deep(100, "array"), False),  # not JSON before it is deep: the parser stops
        ("[" * 5000, True),  # unterminated, and deep
        ('["' + "[" * 5000, False),  # a string that never ends
        ("", False),
    ],
)
def test_the_depth_bound_is_exact_and_strings_do_not_count(text: str, too_deep: bool) -> None:
    assert deeper_than_bound(text.encode()) is too_deep


def test_the_depth_bound_agrees_with_the_parsed_depth() -> None:
    """Random documents around the bound, keys and strings full of brackets, quotes and
    backslashes, against the depth of what `json.loads` makes of them."""
    rng = random.Random(17)
    awkward = ["[", "]{", '"', "\\", '\\"', '""', "\\\\", "é[", "\\u005b", ""]

    def make(levels: int) -> Any:
        if levels == 0 or rng.random() < 0.2:
            return rng.choice([1, None, *awkward])
        if rng.random() < 0.5:
            return [make(levels - 1) for _ in range(rng.randint(0, 2))]
        return {rng.choice(awkward) + str(n): make(levels - 1) for n in range(rng.randint(0, 2))}

    def depth(value: Any) -> int:
        if isinstance(value, dict | list):
            children = value.values() if isinstance(value, dict) else value
            return 1 + max(map(depth, children), default=0)
        return 0

    seen = set()
    for _ in range(400):
        value = make(rng.randint(1, 20))
        for _ in range(rng.randint(MAX_DEPTH - 25, MAX_DEPTH + 5)):
            value = [value] if rng.random() < 0.5 else {"w": value}
        text = json.dumps(value, ensure_ascii=rng.random() < 0.5, indent=rng.choice([None, 1]))
        too_deep = depth(json.loads(text)) > MAX_DEPTH
        assert deeper_than_bound(text.encode()) is too_deep, text[:200]
        seen.add(too_deep)
    assert seen == {False, True}


def test_the_signature_over_chunks_is_the_signature_over_the_body() -> None:
    body = b'{"zen": "Keep it logically awesome."}' * 1000
    chunks = [body[i : i + 4096] for i in range(0, len(body), 4096)]
    assert github_signature(b"secret", chunks) == github_signature(b"secret", body)


@pytest.mark.parametrize("kind", ["array", "object"])
@pytest.mark.parametrize("levels", [MAX_DEPTH, 1_000, 100_000])
def test_a_deeply_nested_body_is_refused_with_a_reason_on_both_webhooks(
    client: httpx.Client, sql, kind: str, levels: int
) -> None:
    body = ('{"action": "opened", "deep": ' + deep(levels, kind) + "}").encode()
    github = client.post("/webhooks/github", content=body, headers=github_headers("issues", body))
    update = b'{"update_id": 1, "message": ' + deep(levels, kind).encode() + b"}"
    telegram = post_raw_telegram(client, update)
    for response in (github, telegram):
        assert response.status_code == 400, response.text
        assert response.json()["reason"] == "too_deep"
        assert "deeper than" in response.json()["error"]
    assert sql("SELECT count(*) FROM inbox") == [(0,)]


def test_a_signed_body_of_25_mb_of_brackets_gets_its_400(client: httpx.Client, sql) -> None:
    """The most a signed delivery may carry, nested all the way (bench/payload_depth.py times
    the measure, which runs on the event loop)."""
    levels = (GITHUB_MAX_BODY - 100) // 2
    body = b'{"action": "opened", "deep": ' + b"[" * levels + b"]" * levels + b"}"
    response = client.post("/webhooks/github", content=body, headers=github_headers("ping", body))
    assert response.status_code == 400, response.text
    assert response.json()["reason"] == "too_deep"
    assert sql("SELECT count(*) FROM inbox") == [(0,)]


def test_nesting_up_to_the_bound_is_accepted(client: httpx.Client, sql) -> None:
    payload = example("ping")
    payload["deep"] = json.loads(deep(MAX_DEPTH - 1, "array"))
    body = json.dumps(payload).encode()
    response = client.post("/webhooks/github", content=body, headers=github_headers("ping", body))
    assert response.status_code == 202, response.text


@pytest.mark.parametrize(
    "body",
    [
        b"\xff\xfe{}",  # not UTF-8
        b'{"update_id": 1, "message": {"text": "\\ud800"}}',  # a lone surrogate
        b'{"update_id": 1, "n": ' + b"1" * 5000 + b"}",  # past int's digit limit
        b'{"update_id": 1, "n": NaN}',
        b'{"update_id": 1, "message": {"text": "a\\u0000b"}}',
        json.dumps({"action": "a\u0000", **telegram_update(1)}).encode(),  # NUL: jsonb says no
        b'{"update_id": 1, "message": ' + b"[" * 2000,  # unterminated, and deep
        b'{"update_id": 1, "message": "' + b"\\" * 3 + b"}",
        b"",
    ],
)
def test_no_body_gets_a_5xx(client: httpx.Client, sql, body: bytes) -> None:
    github = client.post("/webhooks/github", content=body, headers=github_headers("issues", body))
    telegram = post_raw_telegram(client, body)
    for response in (github, telegram):
        assert response.status_code < 500, response.text
        if response.status_code >= 400:
            assert response.json()["reason"]


def test_a_declared_length_over_the_cap_is_refused_before_the_body_is_read(
    settings: Settings, database: str, sql
) -> None:
    with running_server(settings, database, worker=False) as (url, _):
        with connect(url) as conn:
            # Only the head is sent: a server waiting for the body would never answer.
            conn.sendall(head("/webhooks/github", {"Content-Length": str(30 * 1024 * 1024)}))
            status, _ = read_head(conn)
        assert status == 413
    assert sql("SELECT count(*) FROM inbox") == [(0,)]


def test_unverified_bodies_past_the_budget_are_told_to_retry(tmp_path, database: str) -> None:
    settings = make_settings(tmp_path, database, PERSAIS_UNVERIFIED_BODY_BYTES=100_000)
    big = b"x" * 60_000
    with running_server(settings, database, worker=False) as (url, _):
        uploads = [connect(url) for _ in range(6)]
        try:
            for conn in uploads:  # unsigned, chunked, never finished: held as long as they last
                conn.sendall(head("/webhooks/github", {"Transfer-Encoding": "chunked"}))
                conn.sendall(b"%x\r\n" % 40_000 + b"x" * 40_000 + b"\r\n")
            answered: dict[int, tuple[int, dict[str, str]]] = {}

            def refused_enough() -> bool:
                for n, conn in enumerate(uploads):
                    if n not in answered and readable(conn):
                        answered[n] = read_head(conn)
                return len(answered) >= 4  # 100,000 bytes hold at most two of 40,000

            wait_for(refused_enough, 10, "uploads past the budget refused")
            for status, headers in answered.values():
                assert status == 503
                assert int(headers["retry-after"]) > 0

            # The two held uploads leave room for a signed delivery of ordinary size.
            with client_for(url) as client:
                payload = json.dumps(example("ping")).encode()
                response = client.post(
                    "/webhooks/github", content=payload, headers=github_headers("ping", payload)
                )
                assert response.status_code == 202, response.text
                busy = client.post(
                    "/webhooks/github", content=big, headers=github_headers("ping", big)
                )
                assert busy.status_code == 503
                assert busy.headers["retry-after"]
        finally:
            for conn in uploads:
                conn.close()
        with client_for(url) as client:
            # Closed uploads give their bytes back.
            wait_for(
                lambda: client.post(
                    "/webhooks/github", content=big, headers={"Content-Type": "application/json"}
                ).status_code == 401,
                10, "the budget freed",
            )  # fmt: skip


def post_raw_telegram(client: httpx.Client, body: bytes) -> httpx.Response:
    return client.post(
        "/webhooks/telegram",
        content=body,
        headers={
            "Content-Type": "application/json",
            "X-Telegram-Bot-Api-Secret-Token": TELEGRAM_SECRET,
        },
    )


def connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def head(path: str, extra: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
    lines += [f"{name}: {value}" for name, value in extra.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def readable(conn: socket.socket) -> bool:
    conn.setblocking(False)
    try:
        return bool(conn.recv(1, socket.MSG_PEEK))
    except BlockingIOError:
        return False
    finally:
        conn.setblocking(True)
        conn.settimeout(10)


def read_head(conn: socket.socket) -> tuple[int, dict[str, str]]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        assert chunk, f"the connection closed without an answer: {data!r}"
        data += chunk
    status_line, *header_lines = data.split(b"\r\n\r\n", 1)[0].decode().split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers
