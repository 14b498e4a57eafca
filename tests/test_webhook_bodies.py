"""Bodies no webhook may choke on: nesting past the bound, a declared length over the cap,
and more unverified bytes in flight than the budget allows."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import httpx
import pytest

from app.settings import Settings
from app.web.payload import MAX_DEPTH, nesting
from app.web.signature import github_signature
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


def test_nesting_counts_brackets_outside_strings() -> None:
    assert nesting('{"a": [1, {"b": "[[[{{{"}], "c\\"[[": []}') == 3
    assert nesting('"just a string"') == 0
    assert nesting(deep(5000, "object")) == 5000


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
