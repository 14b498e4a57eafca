"""The console's Audit log: newest first a page at a time (keyset on the id), by person, by
action (exact or a prefix), by time; bad filters answered plainly; details escaped, compact
and with secrets cut out; nothing for a stranger."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from typing import Any

from starlette.testclient import TestClient

from app.settings import Settings
from tests.support.console import console_client, log_in

Sql = Callable[..., list[tuple[Any, ...]]]


def add(sql: Sql, actor: str, action: str, minute: int, detail: str = "{}",
        subject: str | None = None) -> int:  # fmt: skip
    """An audit entry at 2026-12-01 10:00 UTC plus `minute` minutes; its id."""
    return int(sql(
        "INSERT INTO audit_log (at, actor, action, subject, detail) VALUES"
        " (timestamptz '2026-12-01 10:00:00+00' + make_interval(mins => %s), %s, %s, %s, %s)"
        " RETURNING id", minute, actor, action, subject, detail,
    )[0][0])  # fmt: skip


def ids_in(page: str) -> list[int]:
    table = page[page.index('<table id="audit">') : page.index("</table>")]
    return [int(found) for found in re.findall(r"<tr>\s*<td>(\d+)</td>", table)]


def older_link(page: str) -> str | None:
    found = re.search(r'<a href="(/console/audit\?[^"]*)" rel="next">Older</a>', page)
    return None if found is None else html.unescape(found.group(1))


def walk(client: TestClient, start: str, **params: str) -> list[list[int]]:
    """Every page from `start` (with `params`), following Older links: the ids on each."""
    pages: list[list[int]] = []
    answer = client.get(start, params=params)
    while True:
        assert answer.status_code == 200, answer.text
        pages.append(ids_in(answer.text))
        address = older_link(answer.text)
        if address is None:
            return pages
        assert len(pages) < 10
        answer = client.get(address)


def test_the_log_pages_newest_first_without_duplicates_or_gaps(
    settings: Settings, database: str, sql: Sql
) -> None:
    for i in range(120):
        add(sql, f"tg:{i % 3}", "command", i)
    with console_client(settings, database) as client:
        log_in(client, database, "cli:ada", "reader")  # itself audited: console.login
        expected = [row[0] for row in sql("SELECT id FROM audit_log ORDER BY id DESC")]
        assert len(expected) == 121
        pages = walk(client, "/console/audit")
        assert [len(page) for page in pages] == [50, 50, 21]
        assert [i for page in pages for i in page] == expected
        second = client.get(older_link(client.get("/console/audit").text) or "")
        assert 'href="/console/audit">Newest</a>' in second.text


def test_the_log_filters_by_person_action_and_time(
    settings: Settings, database: str, sql: Sql
) -> None:
    ada = [add(sql, "tg:1", "command", i) for i in range(60)]  # 10:00 to 10:59
    bob = [add(sql, "tg:2", "inbox.replay", 60 + i) for i in range(5)]  # 11:00 to 11:04
    console = [add(sql, "cli:ada", f"console.{name}", 70 + i)
               for i, name in enumerate(("login", "logout", "forgery_refused"))]  # fmt: skip
    add(sql, "cli:ada", "consoled", 80)  # a name sharing the prefix's letters, not its dot
    with console_client(settings, database) as client:
        log_in(client, database, "cli:eve", "reader")

        def found(**params: str) -> list[int]:
            return [i for page in walk(client, "/console/audit", **params) for i in page]

        assert found(actor="tg:1") == ada[::-1]  # over two pages, the filter kept
        assert len(walk(client, "/console/audit", actor="tg:1")) == 2
        assert found(actor=" tg:2 ") == bob[::-1]
        assert found(actor="tg:") == []  # a person is matched whole
        assert found(action="inbox.replay") == bob[::-1]
        assert found(action="inbox") == []  # exact unless it ends with . or *
        assert found(action="console.", actor="cli:ada") == console[::-1]
        assert found(action="console.*", actor="cli:ada") == console[::-1]
        assert len(found(action="console*")) == 5  # cli:ada's four and cli:eve's login
        # Time: from is inclusive; to takes in the whole minute it names.
        assert found(**{"from": "2026-12-01T10:58", "to": "2026-12-01T11:01"}) == [
            bob[1], bob[0], ada[59], ada[58]]  # fmt: skip
        assert found(**{"from": "2026-12-01T11:02:00"}, actor="tg:2") == bob[:1:-1]
        assert found(to="2026-12-01T10:01:00") == [ada[1], ada[0]]
        assert found(to="2026-11-30") == []
        assert found(to="2026-12-01", actor="tg:1") == ada[::-1]  # a day takes in all of it
        page = client.get("/console/audit", params={"actor": "tg:2", "from": "2026-12-01T11:00"})
        assert 'id="audit-actor" name="actor" value="tg:2"' in page.text
        assert 'value="2026-12-01T11:00"' in page.text
        assert '<label for="audit-from">From (UTC)' in page.text
        assert (
            "No entries match these filters"
            in client.get("/console/audit", params={"actor": "nobody"}).text
        )


def test_bad_filters_are_answered_plainly(settings: Settings, database: str, sql: Sql) -> None:
    add(sql, "tg:1", "command", 0)
    with console_client(settings, database) as client:
        log_in(client, database, "cli:eve", "reader")
        for params, words in [
            ({"from": "yesterday"}, "“From” is not a date and time such as 2026-12-07T13:50"),
            ({"to": "2026-13-01T00:00"}, "“To” is not a date and time"),
            ({"to": "9999-12-31T23:59"}, "“To” is not a date and time"),
            ({"from": "2026-12-02T00:00", "to": "2026-12-01T00:00"}, "“To” is before “From”"),
            ({"before": "abc"}, "is not a place in the audit log"),
            ({"before": "-5"}, "is not a place in the audit log"),
            ({"before": "99999999999999999999"}, "is not a place in the audit log"),
            ({"actor": "x" * 201}, "The person filter is longer than 200 characters"),
            ({"action": "x" * 201 + "*"}, "The action filter is longer than 200 characters"),
        ]:
            answer = client.get("/console/audit", params=params)
            assert answer.status_code == 400, params
            assert html.unescape(answer.text).count(words) == 1, (params, answer.text)
            assert ids_in(answer.text) == []
        script = client.get("/console/audit", params={"from": "<script>x</script>"})
        assert script.status_code == 400
        assert "<script>x" not in script.text


def test_details_are_escaped_compact_and_without_secrets(
    settings: Settings, database: str, sql: Sql
) -> None:
    token = "ghp_" + "a1B2c3D4e5" * 4
    add(sql, "tg:1", "mechanic.request", 0, '{"text": "<script>alert(1)</script>", "n": 2}',
        subject="inbox:7")  # fmt: skip
    add(sql, "tg:1", "setup.token", 1, f'{{"note": "{token}", "password": "hunter2hunter2"}}')
    add(sql, "tg:1", "long", 2, '{"text": "' + "word " * 100 + '"}')
    with console_client(settings, database) as client:
        log_in(client, database, "cli:eve", "reader")
        text = client.get("/console/audit").text
        assert "<script>alert" not in text
        shown = '{"n": 2, "text": "&lt;script&gt;alert(1)&lt;/script&gt;"}'  # jsonb's key order
        shown = shown.replace('"', "&#34;")
        assert f"<code>{shown}</code>" in text
        assert token not in text
        assert "[redacted: GitHub token]" in text
        assert "hunter2hunter2" not in text
        assert '<a href="/console/inbox/7">inbox:7</a>' in text
        assert "<details><summary>" in text  # the long one, folded
        assert '<a href="/console/audit?actor=tg%3A1">tg:1</a>' in text
        assert '<a href="/console/audit?action=mechanic.request">mechanic.request</a>' in text


def test_a_stranger_gets_the_login_page_and_no_entries(
    settings: Settings, database: str, sql: Sql
) -> None:
    add(sql, "tg:424242", "secret.action", 0, '{"words": "private words"}')
    with console_client(settings, database) as client:
        for params in ({}, {"actor": "tg:424242"}, {"before": "5"}):
            answer = client.get("/console/audit", params=params)
            assert answer.status_code == 401
            assert "persais console-link" in answer.text
            assert "tg:424242" not in answer.text
            assert "secret.action" not in answer.text
            assert "private words" not in answer.text
