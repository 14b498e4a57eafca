"""The console's Memory page: `/ask` answered as the chat answers it, with `path:line` links
that open the local forge's file at that line; the lessons, paged; an admin retiring one."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from starlette.testclient import TestClient

from app.console import forge_files
from app.settings import Settings
from tests.support.console import console_client, log_in
from tests.support.scripted_llm import scripted_llm

Sql = Callable[..., list[tuple[Any, ...]]]
WEBHOOK_PY = '''"""Webhooks from Telegram."""


def verify_telegram_secret(header: str, secret: str) -> bool:
    """Check the secret token header Telegram sends with every webhook."""
    return header == secret  # never "<script>alert(1)</script>"
'''
QUESTION = "How is the Telegram secret token header of a webhook checked?"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip


def local_forge(settings: Settings, tmp_path: Path) -> str:
    """The local forge's bare repository with one small commit; its sha."""
    work = tmp_path / "work"
    (work / "app").mkdir(parents=True)
    (work / "app" / "webhook.py").write_text(WEBHOOK_PY)
    (work / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0binary")
    git(tmp_path, "init", "-q", "-b", "main", str(work))
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "webhooks")
    bare = forge_files.bare_repository(settings)
    bare.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True)
    return git(work, "rev-parse", "HEAD")


def lesson(sql: Sql, text: str, *, retired: bool = False, by: str = "tg:1") -> int:
    rows = sql(
        "INSERT INTO lessons (repository, text, paths, source, created_by, retired_at, retired_by)"
        " VALUES ('persais', %s, '{app/review/}', 'command', %s, %s, %s) RETURNING id",
        text, by, "2026-01-01" if retired else None, "tg:9" if retired else None,
    )  # fmt: skip
    return int(rows[0][0])


def links(html: str) -> list[str]:
    return re.findall(r'<a href="([^"]+)">', html)


# --- /ask -----------------------------------------------------------------------------------


def test_ask_answers_with_links_that_open_the_file_at_that_line(
    tmp_path: Path, settings: Settings, database: str, sql: Sql
) -> None:
    commit = local_forge(settings, tmp_path)
    with console_client(settings, database) as client:
        log_in(client, database, "cli:ada", "reader")
        empty = client.get("/console/memory")
        assert empty.status_code == 200
        assert '<form id="ask"' in empty.text
        assert '<label for="ask-q">' in empty.text
        assert 'name="q"' in empty.text
        assert "No model is configured" in empty.text
        page = client.get("/console/memory", params={"q": QUESTION})
        assert page.status_code == 200, page.text
        assert f"From the index of persais at {commit[:7]}" in page.text
        target = f"/console/files/{commit}/app/webhook.py#L4"
        assert target in links(page.text)  # in the answer's text and in its sources
        assert '<ol id="sources"' in page.text
        shown = client.get(target.partition("#")[0])
        assert shown.status_code == 200
        row = re.search(r'<tr id="L4">(.*?)</tr>', shown.text)
        assert row is not None
        assert "verify_telegram_secret" in re.sub(r"<[^>]+>", "", row.group(1))
        # Escaped (and coloured): the file's text never becomes markup.
        assert "<script>alert" not in shown.text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in shown.text
        assert 'class="source highlight"' in shown.text
    rows = sql("SELECT actor, action FROM audit_log WHERE action LIKE 'memory.%' ORDER BY id")
    assert rows == [("persais", "memory.indexed"), ("cli:ada", "memory.asked")]


def test_ask_with_a_model_links_the_places_it_names(
    tmp_path: Path, settings: Settings, database: str
) -> None:
    commit = local_forge(settings, tmp_path)
    with scripted_llm(["It is checked in `app/webhook.py:6`, against the secret."]) as (api, llm):
        configured = settings.model_copy(
            update={"llm_api_base": api, "llm_api_key": SecretStr("k")}
        )
        with console_client(configured, database) as client:
            log_in(client, database)
            page = client.get("/console/memory", params={"q": QUESTION})
    assert page.status_code == 200, page.text
    assert "No model is configured" not in page.text
    assert "It is checked in `<a href=" in page.text
    assert f'<a href="/console/files/{commit}/app/webhook.py#L6">app/webhook.py:6</a>' in page.text
    assert len(llm.requests) == 1
    assert QUESTION in llm.requests[0]["messages"][1]["content"]


def test_a_reference_into_a_github_repository_links_to_github(settings: Settings) -> None:
    local = settings
    on_github = local.model_copy(update={"home_repo": "octo/persais"})
    sha = "a" * 40
    assert forge_files.link(on_github, "octo/persais", sha, "app/x.py", 3, 9) == (
        f"https://github.com/octo/persais/blob/{sha}/app/x.py#L3-L9"
    )
    enterprise = on_github.model_copy(update={"github_api_url": "https://ghe.example/api/v3"})
    assert forge_files.link(enterprise, "octo/persais", sha, "app/x.py", 3) == (
        f"https://ghe.example/octo/persais/blob/{sha}/app/x.py#L3"
    )
    assert forge_files.link(local, "persais", sha, "app/x.py", 3, 9) == (
        f"/console/files/{sha}/app/x.py#L3"
    )
    # Only the answer's own references become links.
    pieces = forge_files.pieces("see app/x.py:3 on host:8000", ("app/x.py:1-5",), local,
                                "persais", sha)  # fmt: skip
    assert [p.href for p in pieces] == [None, f"/console/files/{sha}/app/x.py#L3", None]
    assert "".join(p.text for p in pieces) == "see app/x.py:3 on host:8000"


def test_the_file_page_shows_only_files_of_the_local_forge(
    tmp_path: Path, settings: Settings, database: str
) -> None:
    commit = local_forge(settings, tmp_path)
    with console_client(settings, database) as client:
        stranger = client.get(f"/console/files/{commit}/app/webhook.py")
        assert stranger.status_code == 401
        assert "verify_telegram_secret" not in stranger.text
        log_in(client, database, "cli:ada", "reader")
        for path in [
            f"{commit}/app/%2E%2E/app/webhook.py",  # sent as it is: no client tidies it
            f"{commit}/app",  # a folder
            f"{commit}/logo.png",  # binary
            f"{commit}/app/nowhere.py",
            "not-a-commit/app/webhook.py",
            f"{'0' * 40}/app/webhook.py",
        ]:
            answer = client.get(f"/console/files/{path}")
            assert answer.status_code == 404, path
            assert "verify_telegram_secret" not in answer.text
        assert client.get(f"/console/files/{commit[:12]}/app/webhook.py").status_code == 200
    assert forge_files.safe_path("app/webhook.py")
    for bad in ["app/../x", "./x", "/etc/passwd", "-x", "a//b", "a/b/", "a\nb", ""]:
        assert not forge_files.safe_path(bad), bad


# --- lessons --------------------------------------------------------------------------------


def test_lessons_are_listed_and_an_admin_retires_one(
    settings: Settings, database: str, sql: Sql
) -> None:
    keep = lesson(sql, "keep summaries to two sentences")
    drop = lesson(sql, "never block the event loop")
    old = lesson(sql, "an old lesson", retired=True)
    with console_client(settings, database) as client:
        csrf = log_in(client, database, "cli:ada", "admin")
        page = client.get("/console/memory")
        assert "keep summaries to two sentences" in page.text
        assert "never block the event loop" in page.text
        assert "an old lesson" not in page.text  # active ones by default
        assert f'action="/console/memory/lessons/{drop}/retire"' in page.text
        assert 'data-confirm="Retire lesson' in page.text
        retired = client.get("/console/memory", params={"status": "retired"}).text
        assert "an old lesson" in retired
        assert "retired by tg:9" in retired
        # Without the CSRF token nothing happens.
        forged = client.post(f"/console/memory/lessons/{drop}/retire", data={})
        assert forged.status_code == 403
        done = client.post(f"/console/memory/lessons/{drop}/retire", data={"csrf": csrf})
        assert done.status_code == 303
        assert done.headers["location"] == f"/console/memory?retired={drop}"
        after = client.get(done.headers["location"]).text
        assert f"Lesson #{drop} retired" in after
        assert "never block the event loop" not in after
        again = client.post(f"/console/memory/lessons/{drop}/retire", data={"csrf": csrf})
        assert again.status_code == 404
        assert f"no active lesson #{drop}" in again.text
        assert client.post(f"/console/memory/lessons/{old}/retire",
                           data={"csrf": csrf}).status_code == 404  # fmt: skip
    assert sql("SELECT id, retired_by FROM lessons WHERE retired_at IS NOT NULL ORDER BY id") == [
        (drop, "cli:ada"), (old, "tg:9"),
    ]  # fmt: skip
    assert sql("SELECT retired_at FROM lessons WHERE id = %s", keep) == [(None,)]
    audited = sql("SELECT actor, action, subject, detail FROM audit_log"
                  " WHERE action LIKE 'memory.%'")  # fmt: skip
    assert audited == [("cli:ada", "memory.lesson_retired", f"lesson:{drop}", {"via": "console"})]


def test_a_reader_sees_the_lessons_but_may_not_retire_them(
    settings: Settings, database: str, sql: Sql
) -> None:
    target = lesson(sql, "never block the event loop")
    with console_client(settings, database) as client:
        csrf = log_in(client, database, "cli:bob", "reader")
        page = client.get("/console/memory")
        assert "never block the event loop" in page.text
        assert "/retire" not in page.text
        refused = client.post(f"/console/memory/lessons/{target}/retire", data={"csrf": csrf})
        assert refused.status_code == 403
    assert sql("SELECT retired_at FROM lessons") == [(None,)]
    assert sql("SELECT count(*) FROM audit_log WHERE action = 'memory.lesson_retired'") == [(0,)]


def test_a_stranger_sees_no_lessons_and_retires_nothing(
    settings: Settings, database: str, sql: Sql
) -> None:
    target = lesson(sql, "never block the event loop")
    with console_client(settings, database) as client:
        page = client.get("/console/memory", params={"status": "all"})
        assert page.status_code == 401
        assert "never block the event loop" not in page.text
        assert '<form id="ask"' not in page.text
        asked = client.get("/console/memory", params={"q": QUESTION})
        assert asked.status_code == 401
        refused = client.post(f"/console/memory/lessons/{target}/retire", data={"csrf": "x"})
        assert refused.status_code == 401
    assert sql("SELECT retired_at FROM lessons") == [(None,)]
    assert sql("SELECT count(*) FROM audit_log WHERE action LIKE 'memory.%'") == [(0,)]


def test_lessons_are_paged_newest_first(settings: Settings, database: str, sql: Sql) -> None:
    sql("INSERT INTO lessons (repository, text, source, created_by)"
        " SELECT 'persais', 'lesson number ' || n, 'command', 'tg:1'"
        " FROM generate_series(1, 120) AS n")  # fmt: skip
    ids = [row[0] for row in sql("SELECT id FROM lessons ORDER BY id DESC")]

    def shown(client: TestClient, url: str) -> tuple[list[int], str | None]:
        html = client.get(url).text
        rows = [int(n) for n in re.findall(r'<tr id="lesson-(\d+)">', html)]
        older = re.search(r'href="(/console/memory\?status=active&amp;before=\d+)"', html)
        return rows, older.group(1).replace("&amp;", "&") if older else None

    with console_client(settings, database) as client:
        log_in(client, database, "cli:ada", "reader")
        first, older = shown(client, "/console/memory")
        assert first == ids[:50]
        assert older is not None
        second, older = shown(client, older)
        assert second == ids[50:100]
        assert older is not None
        third, older = shown(client, older)
        assert third == ids[100:]
        assert older is None


@pytest.mark.parametrize("status", ["active", "retired", "all", "bogus"])
def test_the_lesson_filter_takes_only_what_it_knows(
    settings: Settings, database: str, status: str
) -> None:
    with console_client(settings, database) as client:
        log_in(client, database, "cli:ada", "reader")
        answer = client.get("/console/memory", params={"status": status, "before": "x"})
        assert answer.status_code == 200
        shown = status if status != "bogus" else "active"
        assert f'<option value="{shown}" selected>' in answer.text
