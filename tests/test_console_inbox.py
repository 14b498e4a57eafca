"""The console's Inbox: deliveries newest first a page at a time, by status and source; one
delivery with its payload escaped and its secrets cut out; Replay of a dead delivery by an
admin (the same replay as `persais inbox replay`), refused to readers, strangers and forms
without their CSRF token."""

from __future__ import annotations

import html
import json
import random
import re
import string
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

from starlette.testclient import TestClient

from app.runtime import Runtime
from app.settings import Settings
from app.worker.queue import QUEUE, TASK
from tests.support.console import console_client, log_in

Sql = Callable[..., list[tuple[Any, ...]]]


def made_up(length: int) -> str:
    """A random-looking value, made at run time (no secret-shaped text in the repository)."""
    rng = random.Random(length)
    return "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(length))


def add(sql: Sql, *, source: str = "github", status: str = "processed", seconds: int = 0,
        payload: dict[str, Any] | None = None, error: str | None = None,
        event: str = "star", attempts: int = 1) -> int:  # fmt: skip
    """A delivery received `seconds` after a fixed moment; its id."""
    n = sql("SELECT count(*) FROM inbox")[0][0]
    return int(sql(
        "INSERT INTO inbox (source, delivery_id, event, action, payload, status, attempts,"
        " last_error, received_at) VALUES (%s, %s, %s, 'created', %s, %s, %s, %s,"
        " timestamptz '2026-12-01 10:00:00+00' + make_interval(secs => %s)) RETURNING id",
        source, f"d-{n}", event, json.dumps(payload or {"n": n}), status, attempts, error,
        seconds,
    )[0][0])  # fmt: skip


def ids_in(page: str) -> list[int]:
    table = page[page.index('<table id="inbox">') : page.index("</table>")]
    return [int(found) for found in re.findall(r'<a href="/console/inbox/(\d+)">', table)]


def older_link(page: str) -> str | None:
    found = re.search(r'<a href="(/console/inbox\?[^"]*)" rel="next">Older</a>', page)
    return None if found is None else html.unescape(found.group(1))


def walk(client: TestClient, start: str) -> list[list[int]]:
    """Every page from `start`, following Older links: the ids on each."""
    pages: list[list[int]] = []
    address: str | None = start
    while address is not None:
        answer = client.get(address)
        assert answer.status_code == 200, answer.text
        pages.append(ids_in(answer.text))
        address = older_link(answer.text)
        assert len(pages) < 10
    return pages


def test_the_inbox_pages_newest_first_without_duplicates_or_gaps(
    settings: Settings, database: str, sql: Sql
) -> None:
    # 120 deliveries, received in pairs within one moment: the id breaks each tie, and the
    # received time (not the id) orders them: the first ten arrive last.
    for i in range(120):
        add(sql, seconds=(i // 2) + (1000 if i < 10 else 0))
    expected = [row[0] for row in sql("SELECT id FROM inbox ORDER BY received_at DESC, id DESC")]
    assert expected[:2] == [10, 9]
    with console_client(settings, database) as client:
        log_in(client, database, "cli:ada", "reader")
        pages = walk(client, "/console/inbox")
        assert [len(page) for page in pages] == [50, 50, 20]
        assert [i for page in pages for i in page] == expected
        second = client.get(older_link(client.get("/console/inbox").text) or "")
        assert 'href="/console/inbox">Newest</a>' in second.text


def test_the_inbox_filters_by_status_and_source(
    settings: Settings, database: str, sql: Sql
) -> None:
    dead_github = [add(sql, status="dead", seconds=i) for i in range(3)]
    dead_telegram = [add(sql, source="telegram", status="dead", seconds=10 + i) for i in range(60)]
    processed_telegram = add(sql, source="telegram", seconds=100)
    with console_client(settings, database) as client:
        log_in(client, database, "cli:ada", "reader")
        dead = [i for page in walk(client, "/console/inbox?status=dead") for i in page]
        assert dead == sorted(dead_github + dead_telegram, reverse=True)
        telegram = [i for page in walk(client, "/console/inbox?source=telegram") for i in page]
        assert telegram == sorted([*dead_telegram, processed_telegram], reverse=True)
        both = walk(client, "/console/inbox?status=dead&source=github")
        assert both == [sorted(dead_github, reverse=True)]
        page = client.get("/console/inbox?status=dead&source=github").text
        assert '<option value="dead" selected>' in page
        assert '<option value="github" selected>' in page
        none = client.get("/console/inbox?status=ignored")
        assert ids_in(none.text) == []
        assert "No deliveries match these filters" in none.text


def test_bad_inbox_filters_are_answered_plainly(
    settings: Settings, database: str, sql: Sql
) -> None:
    add(sql, payload={"text": "the only delivery"})
    with console_client(settings, database) as client:
        log_in(client, database, "cli:ada", "reader")
        unknown = client.get("/console/inbox?status=bogus<b>")
        assert unknown.status_code == 400
        assert "There is no status &#39;bogus&lt;b&gt;&#39;: it is one of received," in unknown.text
        assert ids_in(unknown.text) == []
        source = client.get("/console/inbox?source=slack")
        assert source.status_code == 400
        assert "There is no source &#39;slack&#39;" in source.text
        for cursor in ("yesterday", "1-2-3", "99999999999999999999-1", "1-99999999999999999999"):
            answer = client.get("/console/inbox", params={"before": cursor})
            assert answer.status_code == 400, cursor
            assert "is not a place in the inbox" in answer.text
        for missing in ("/console/inbox/999", "/console/inbox/99999999999999999999"):
            answer = client.get(missing)
            assert answer.status_code == 404
            assert "No delivery" in answer.text
        assert client.get("/console/inbox/abc").status_code == 404


def test_a_delivery_shows_its_story_with_the_payload_escaped_and_secrets_cut_out(
    settings: Settings, database: str, sql: Sql
) -> None:
    token = "ghp_" + made_up(36)
    configured = settings.telegram_bot_token
    assert configured is not None
    bot_token = configured.get_secret_value()
    payload = {
        "comment": {"body": "<script>alert('x')</script> & more"},
        "hook": {"config": {"url": "https://example.test/hook", "secret": "hunter2hunter2"}},
        "note": f"pasted {token} by mistake",
        "echo": f"the bot is {bot_token}",
        "access_tokens_url": "https://api.github.test/app/installations/1/access_tokens",
    }
    inbox_id = add(sql, status="dead", payload=payload, attempts=3,
                   error=f"ConnectionError: https://x:{made_up(20)}@api.test refused")  # fmt: skip
    with console_client(settings, database) as client:
        log_in(client, database, "cli:ada", "reader")
        page = client.get(f"/console/inbox/{inbox_id}")
        assert page.status_code == 200
        text = page.text
        assert "<script>alert" not in text
        assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; more" in text
        assert token not in text
        assert "[redacted: GitHub token]" in text
        assert "hunter2hunter2" not in text
        assert "&#34;secret&#34;: &#34;[redacted: secret field]&#34;" in text
        assert bot_token not in text
        assert bot_token.split(":")[1] not in text
        assert "[redacted: " in text.split("the bot is ")[1][:40]
        assert made_up(20) not in text  # the password in the error's URL
        assert "ConnectionError: https://x:[redacted: password in a URL]@api.test" in text
        # Names that only mention tokens keep their (harmless) values; the JSON is pretty.
        assert "https://api.github.test/app/installations/1/access_tokens" in text
        assert "\n  &#34;comment&#34;: {\n    &#34;body&#34;" in text
        assert "<code>d-0</code>" in text
        assert "star.created" in text
        assert "<dt>Status</dt><dd>dead</dd>" in text
        assert ">Replay</button>" not in text  # a reader's page


@contextmanager
def with_queue(settings: Settings, database: str) -> Iterator[tuple[TestClient, Runtime]]:
    """The console with a runtime (its queue opened, no worker running), as `persais serve`
    gives it."""
    runtime = Runtime(settings, database)
    with console_client(settings, database, runtime=runtime) as client:
        assert client.portal is not None
        client.portal.call(partial(runtime.start, worker=False))
        try:
            yield client, runtime
        finally:
            client.portal.call(runtime.stop)


def jobs(sql: Sql) -> list[tuple[Any, ...]]:
    return sql(
        "SELECT args, status, queue_name FROM procrastinate_jobs WHERE task_name = %s ORDER BY id",
        TASK,
    )


def test_an_admin_replays_a_dead_delivery_once(settings: Settings, database: str, sql: Sql) -> None:
    dead = add(sql, status="dead", attempts=3, error="ConnectionError: upstream unavailable")
    processed = add(sql, status="processed", seconds=5)
    with with_queue(settings, database) as (client, runtime):
        csrf = log_in(client, database, "cli:ada", "admin")
        page = client.get(f"/console/inbox/{dead}").text
        form = re.search(r'<form method="post" action="/console/inbox/(\d+)/replay"'
                         r' data-confirm="([^"]+)">.*?</form>', page, re.S)  # fmt: skip
        assert form is not None
        assert form.group(1) == str(dead)
        assert "Replay delivery" in form.group(2)
        assert '<button type="submit" class="primary">Replay</button>' in form.group(0)
        assert client.get(f"/console/inbox/{processed}").text.count(">Replay</button>") == 0
        listing = client.get("/console/inbox").text
        assert listing.count(">Replay</button>") == 1  # the dead row's

        answer = client.post(f"/console/inbox/{dead}/replay", data={"csrf": csrf})
        assert answer.status_code == 303
        assert answer.headers["location"] == f"/console/inbox/{dead}?replayed=1"
        assert sql("SELECT status, attempts, last_error FROM inbox WHERE id = %s", dead) == [
            ("received", 0, None)
        ]
        assert jobs(sql) == [({"inbox_id": dead}, "todo", QUEUE)]
        shown = client.get(answer.headers["location"]).text
        assert "Queued again" in shown
        assert "cli:ada (via console)" in shown

        # Again (a double click, a second tab): refused plainly, nothing queued twice.
        again = client.post(f"/console/inbox/{dead}/replay", data={"csrf": csrf})
        assert again.status_code == 409
        assert f"Delivery {dead} is received, not dead" in again.text
        closed = client.post(f"/console/inbox/{processed}/replay", data={"csrf": csrf})
        assert closed.status_code == 409
        assert "is processed, not dead" in closed.text
        assert client.post("/console/inbox/999/replay", data={"csrf": csrf}).status_code == 404
        assert len(jobs(sql)) == 1

        # The worker takes the job and the delivery ends (no handler for stars here).
        client.portal.call(partial(
            runtime.queue.app.run_worker_async, queues=[QUEUE], wait=False,
            install_signal_handlers=False,
        ))  # fmt: skip
        assert sql("SELECT status, attempts FROM inbox WHERE id = %s", dead)[0][1] == 1
        assert sql("SELECT status FROM inbox WHERE id = %s", dead)[0][0] in ("ignored", "processed")
    rows = sql("SELECT actor, action, subject, detail FROM audit_log WHERE action = 'inbox.replay'")
    assert rows == [("cli:ada", "inbox.replay", f"inbox:{dead}", {"via": "console"})]


def test_a_reader_sees_no_replay_and_is_refused(
    settings: Settings, database: str, sql: Sql
) -> None:
    dead = add(sql, status="dead", attempts=3, error="boom")
    with with_queue(settings, database) as (client, _):
        csrf = log_in(client, database, "cli:bob", "reader")
        assert ">Replay</button>" not in client.get(f"/console/inbox/{dead}").text
        assert ">Replay</button>" not in client.get("/console/inbox?status=dead").text
        answer = client.post(f"/console/inbox/{dead}/replay", data={"csrf": csrf})
        assert answer.status_code == 403
    assert sql("SELECT status, attempts FROM inbox WHERE id = %s", dead) == [("dead", 3)]
    assert jobs(sql) == []
    assert sql("SELECT count(*) FROM audit_log WHERE action = 'inbox.replay'") == [(0,)]


def test_a_replay_without_the_csrf_token_is_refused(
    settings: Settings, database: str, sql: Sql
) -> None:
    dead = add(sql, status="dead", attempts=3, error="boom")
    with with_queue(settings, database) as (client, _):
        log_in(client, database, "cli:ada", "admin")
        assert client.post(f"/console/inbox/{dead}/replay").status_code == 403
        wrong = client.post(f"/console/inbox/{dead}/replay", data={"csrf": "not-it"})
        assert wrong.status_code == 403
    assert sql("SELECT status FROM inbox WHERE id = %s", dead) == [("dead",)]
    assert jobs(sql) == []


def test_without_a_queue_replay_says_where_to_do_it(
    settings: Settings, database: str, sql: Sql
) -> None:
    dead = add(sql, status="dead", attempts=3, error="boom")
    with console_client(settings, database) as client:  # no runtime: a bare console
        csrf = log_in(client, database, "cli:ada", "admin")
        answer = client.post(f"/console/inbox/{dead}/replay", data={"csrf": csrf})
        assert answer.status_code == 503
        assert f"persais inbox replay {dead}" in answer.text
    assert sql("SELECT status FROM inbox WHERE id = %s", dead) == [("dead",)]


def test_a_stranger_gets_the_login_page_and_no_delivery(
    settings: Settings, database: str, sql: Sql
) -> None:
    dead = add(sql, status="dead", payload={"text": "private words"}, error="secret failure")
    with with_queue(settings, database) as (client, _):
        for address in ("/console/inbox", "/console/inbox?status=dead", f"/console/inbox/{dead}"):
            answer = client.get(address)
            assert answer.status_code == 401
            assert "persais console-link" in answer.text
            assert "private words" not in answer.text
            assert "secret failure" not in answer.text
            assert "d-0" not in answer.text
        assert client.post(f"/console/inbox/{dead}/replay", data={"csrf": "x"}).status_code == 401
    assert sql("SELECT status FROM inbox WHERE id = %s", dead) == [("dead",)]
    assert jobs(sql) == []
