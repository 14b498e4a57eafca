"""`POST /webhooks/github` on the real server over loopback, against a real database."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import httpx
import pytest

from app.settings import Settings
from app.web.signature import github_signature, verify_github
from tests.support.server import client_for, running_server
from tests.support.waiting import wait_for
from tests.support.webhooks import GITHUB_SECRET, example, examples, github_headers, post_github

# The deliveries' jobs (a worker also queues an index run of the home repository).
DELIVERY_JOBS = (
    "SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'persais.process_delivery'"
)


@pytest.fixture
def client(settings: Settings, database: str) -> Iterator[httpx.Client]:
    with running_server(settings, database) as (url, _), client_for(url) as http:
        yield http


def test_githubs_documented_signature_vector() -> None:
    # https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries
    expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert github_signature(b"It's a Secret to Everybody", b"Hello, World!") == expected
    assert verify_github(b"It's a Secret to Everybody", b"Hello, World!", expected)
    assert not verify_github(b"It's a Secret to Everybody", b"Hello, World?", expected)
    assert not verify_github(b"", b"Hello, World!", expected)
    assert not verify_github(b"It's a Secret to Everybody", b"Hello, World!", None)


def test_every_published_event_type_is_accepted_stored_once_and_processed(
    client: httpx.Client, sql
) -> None:
    sent: dict[str, str] = {}
    for event, payloads in sorted(examples().items()):
        for n, payload in enumerate(payloads):
            delivery = f"{event}-{n}-{uuid.uuid4()}"
            response = post_github(client, event, payload, delivery=delivery)
            assert response.status_code == 202, (event, response.text)
            assert response.json()["status"] == "accepted"
            sent[delivery] = event
            # GitHub's "Redeliver" sends the same delivery id again.
            again = post_github(client, event, payload, delivery=delivery)
            assert again.status_code == 202
            assert again.json()["status"] == "duplicate"

    assert len(set(sent.values())) == len(examples()) >= 50
    rows = sql("SELECT delivery_id, event FROM inbox")
    assert sorted(rows) == sorted(sent.items())

    def all_closed() -> bool:
        open_rows = sql("SELECT count(*) FROM inbox WHERE status NOT IN ('processed', 'ignored')")
        return open_rows[0][0] == 0

    wait_for(all_closed, 60, "every delivery processed or ignored")
    by_status = dict(sql("SELECT event, min(status) FROM inbox GROUP BY event"))
    assert by_status["ping"] == "processed"
    assert by_status["installation"] == "processed"
    assert by_status["star"] == "ignored"  # stored, no handler yet
    assert sql("SELECT max(handled_count), min(handled_count) FROM inbox") == [(1, 1)]


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"X-Hub-Signature-256": "sha256=" + "0" * 64}, 401),  # forged
        ({"X-Hub-Signature-256": ""}, 401),  # missing
        ({"X-Hub-Signature-256": "sha1=deadbeef"}, 401),  # wrong algorithm
        ({"__resign__": "not the secret"}, 401),  # signed with the wrong secret
        ({"Content-Type": "application/x-www-form-urlencoded"}, 415),
        ({"Content-Type": "text/plain"}, 415),
        ({"X-GitHub-Event": ""}, 400),
        ({"X-GitHub-Delivery": ""}, 400),
        ({"X-GitHub-Event": "Robert'); DROP TABLE inbox;--"}, 400),
    ],
)
def test_refused_requests_store_nothing(
    client: httpx.Client, sql, headers: dict[str, str], status: int
) -> None:
    body = json.dumps(example("ping")).encode()
    sent = github_headers("ping", body)
    if "__resign__" in headers:
        sent = github_headers("ping", body, secret=headers.pop("__resign__"))
    sent.update(headers)
    response = client.post("/webhooks/github", content=body, headers=sent)
    assert response.status_code == status, response.text
    assert "error" in response.json()
    assert sql("SELECT count(*) FROM inbox") == [(0,)]
    assert sql(DELIVERY_JOBS) == [(0,)]
    assert client.get("/health").status_code == 200


@pytest.mark.parametrize(
    "body",
    [b"{not json", b'["a", "list"]', b"\xff\xfe\x00", b'{"zen": "nul \\u0000 inside"}', b""],
)
def test_malformed_bodies_are_refused_and_store_nothing(
    client: httpx.Client, sql, body: bytes
) -> None:
    response = client.post("/webhooks/github", content=body, headers=github_headers("ping", body))
    assert response.status_code == 400, response.text
    assert sql("SELECT count(*) FROM inbox") == [(0,)]
    assert client.get("/health").status_code == 200


def test_a_body_over_25_mb_is_refused(client: httpx.Client, sql) -> None:
    big = b'{"pad": "' + b"x" * (25 * 1024 * 1024) + b'"}'
    response = client.post("/webhooks/github", content=big, headers=github_headers("ping", big))
    assert response.status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit holds while streaming
        for start in range(0, len(big), 1 << 20):
            yield big[start : start + (1 << 20)]

    headers = github_headers("ping", big)
    response = client.post("/webhooks/github", content=chunks(), headers=headers)
    assert response.status_code == 413
    assert sql("SELECT count(*) FROM inbox") == [(0,)]
    assert client.get("/health").status_code == 200


def test_without_a_configured_secret_every_delivery_is_refused(
    tmp_path, database: str, sql
) -> None:
    from tests.support.config import make_settings

    settings = make_settings(tmp_path, database, GITHUB_WEBHOOK_SECRET=None)
    with running_server(settings, database) as (url, _), client_for(url) as client:
        unsigned = client.post(
            "/webhooks/github",
            json=example("ping"),
            headers={"X-GitHub-Event": "ping", "X-GitHub-Delivery": "d-1"},
        )
        signed = post_github(client, "ping", example("ping"), secret=GITHUB_SECRET)
        assert unsigned.status_code == signed.status_code == 403
        assert "GITHUB_WEBHOOK_SECRET" in signed.json()["error"]
    assert sql("SELECT count(*) FROM inbox") == [(0,)]


def test_installation_events_keep_the_installations_table_current(
    client: httpx.Client, sql
) -> None:
    created = example("installation", "created")
    installation_id = created["installation"]["id"]
    assert post_github(client, "installation", created).status_code == 202
    wait_for(lambda: sql("SELECT 1 FROM installations WHERE id = %s", installation_id))
    login, deleted_at = sql(
        "SELECT account_login, deleted_at FROM installations WHERE id = %s", installation_id
    )[0]
    assert login == created["installation"]["account"]["login"]
    assert deleted_at is None
    repos = sql(
        "SELECT full_name FROM installation_repositories WHERE installation_id = %s",
        installation_id,
    )
    assert sorted(r[0] for r in repos) == sorted(r["full_name"] for r in created["repositories"])

    deleted = example("installation", "deleted")
    deleted["installation"]["id"] = installation_id
    assert post_github(client, "installation", deleted).status_code == 202
    wait_for(
        lambda: sql(
            "SELECT 1 FROM installations WHERE id = %s AND deleted_at IS NOT NULL",
            installation_id,
        )
    )
    actions = sql("SELECT action FROM audit_log WHERE action LIKE 'installation.%%' ORDER BY id")
    assert actions == [("installation.created",), ("installation.deleted",)]
