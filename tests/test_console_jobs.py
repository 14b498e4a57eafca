"""The console's Jobs page: the list (paged, filtered), one job, and its progress live over
server-sent events — the same lines as the chat's progress message, from the same writes."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from app.mechanic_jobs.progress import ChatProgress
from app.settings import Settings
from tests.support.console import console_client, log_in, mint_link
from tests.support.server import running_server

Sql = Callable[..., list[tuple[Any, ...]]]
ROW = re.compile(r'<a href="/console/jobs/([0-9a-z]+)"><code>')


def add_job(sql: Sql, job_id: str, *, request: str = "Create an agent Echo",
            status: str = "running", by: str = "tg:1", minutes_ago: float = 0,
            **columns: Any) -> None:  # fmt: skip
    names = ["id", "conversation", "requested_by", "request", "status", *columns]
    values = [job_id, "tg:1", by, request, status, *columns.values()]
    sql(f"INSERT INTO jobs ({', '.join(names)}, created_at, updated_at)"  # noqa: S608
        f" VALUES ({', '.join(['%s'] * len(names))},"
        " now() - make_interval(secs => %s), now() - make_interval(secs => %s))",
        *values, minutes_ago * 60, minutes_ago * 60)  # fmt: skip


def say(database: str, job_id: str, *steps: tuple[str, str]) -> str:
    """Run the chat's own progress message through `steps` (("stage", name), ("note", text),
    ("finish", "ok"|"failed")); the chat's text as it stands after them."""

    async def run() -> str:
        async with AsyncConnectionPool(database, min_size=1, max_size=2, open=False,
                                       configure=_autocommit) as pool:  # fmt: skip
            async with pool.connection() as conn:
                cur = await conn.execute("SELECT conversation, request FROM jobs WHERE id = %s",
                                         (job_id,))  # fmt: skip
                row = await cur.fetchone()
            assert row is not None
            progress = ChatProgress(pool, job_id, row[0], row[1])
            progress.lines, progress.current = await _resume(pool, job_id)
            for kind, text in steps:
                if kind == "stage":
                    await progress(text)
                elif kind == "note":
                    await progress.note(text)
                else:
                    await progress.finish(text == "ok")
            async with pool.connection() as conn:
                cur = await conn.execute("SELECT text FROM outbox WHERE key = %s",
                                         (f"job:{job_id}:progress",))  # fmt: skip
                said = await cur.fetchone()
            return "" if said is None else str(said[0])

    return asyncio.run(run())


async def _autocommit(conn: Any) -> None:
    await conn.set_autocommit(True)


async def _resume(pool: AsyncConnectionPool, job_id: str) -> tuple[list[str], str | None]:
    """A test that speaks for a job in several calls keeps one run: the chat's lines so far."""
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT text FROM outbox WHERE key = %s",
                                 (f"job:{job_id}:progress",))  # fmt: skip
        row = await cur.fetchone()
    if row is None:
        return [], None
    lines = str(row[0]).split("\n")[1:]
    if lines and lines[-1].startswith("⏳ "):
        return lines[:-1], lines[-1][2:]
    return lines, None


def steps_of(html: str) -> list[str]:
    found = re.search(r'<ol id="job-steps"[^>]*>(.*?)</ol>', html, re.S)
    assert found is not None, "no <ol id=job-steps>"
    return [re.sub(r"<[^>]+>", "", item).strip()
            for item in re.findall(r"<li\b.*?</li>", found.group(1), re.S)]  # fmt: skip


def test_the_list_is_newest_first_fifty_a_page_with_links_both_ways(
    settings: Settings, database: str, sql: Sql
) -> None:
    for n in range(120):
        add_job(sql, f"j{n:03d}", minutes_ago=120 - n, status="failed" if n % 3 else "opened",
                by="tg:1" if n % 2 else "cli:ada")  # fmt: skip
    with console_client(settings, database) as client:
        log_in(client, database)
        first = client.get("/console/jobs")
        assert first.status_code == 200
        assert '<table id="jobs">' in first.text
        ids = ROW.findall(first.text)
        assert ids == [f"j{n:03d}" for n in range(119, 69, -1)]
        assert 'rel="prev"' not in first.text
        older = re.search(r'<a href="([^"]+)" rel="next">', first.text)
        assert older is not None
        second = client.get(older.group(1).replace("&amp;", "&"))
        assert ROW.findall(second.text) == [f"j{n:03d}" for n in range(69, 19, -1)]
        newer = re.search(r'<a href="([^"]+)" rel="prev">', second.text)
        assert newer is not None
        back = client.get(newer.group(1).replace("&amp;", "&"))
        assert ROW.findall(back.text) == ids
        assert 'rel="prev"' not in back.text
        third_link = re.search(r'<a href="([^"]+)" rel="next">', second.text)
        assert third_link is not None
        third = client.get(third_link.group(1).replace("&amp;", "&"))
        assert ROW.findall(third.text) == [f"j{n:03d}" for n in range(19, -1, -1)]
        assert 'rel="next"' not in third.text


def test_the_list_filters_by_status_and_by_who_asked_and_pages_within_the_filter(
    settings: Settings, database: str, sql: Sql
) -> None:
    for n in range(60):
        add_job(sql, f"j{n:03d}", minutes_ago=60 - n, status="failed" if n % 3 else "opened",
                by="tg:1" if n % 2 else "cli:ada")  # fmt: skip
    with console_client(settings, database) as client:
        log_in(client, database)
        opened = client.get("/console/jobs", params={"status": "opened"})
        assert ROW.findall(opened.text) == [f"j{n:03d}" for n in range(57, -1, -3)]
        assert '<option value="opened" selected>' in opened.text
        ada = client.get("/console/jobs", params={"requested_by": "cli:ada"})
        assert ROW.findall(ada.text) == [f"j{n:03d}" for n in range(58, -1, -2)]
        both = client.get("/console/jobs", params={"status": "failed", "requested_by": "tg:1"})
        assert ROW.findall(both.text) == [f"j{n:03d}" for n in range(59, -1, -2) if n % 3]
        none = client.get("/console/jobs", params={"requested_by": "tg:nobody"})
        assert ROW.findall(none.text) == []
        assert "No jobs match these filters" in none.text
        # An unknown status is no filter, not an error.
        assert len(ROW.findall(client.get("/console/jobs?status=bogus").text)) == 50
        # The labelled controls of the filter form.
        assert '<label for="jobs-status">' in opened.text
        assert '<label for="jobs-requested-by">' in opened.text
    for n in range(60, 130):
        add_job(sql, f"j{n:03d}", minutes_ago=0, status="opened", by="cli:bo")
    with console_client(settings, database) as client:
        log_in(client, database)
        page = client.get("/console/jobs", params={"status": "failed"})
        assert len(ROW.findall(page.text)) == 40  # the 70 newer opened jobs are not in it
        assert 'rel="next"' not in page.text


def test_one_job_shows_request_plan_rounds_validation_cost_pull_and_the_chats_steps(
    settings: Settings, database: str, sql: Sql
) -> None:
    plan = (
        '{"kind": "agent", "name": "echo", "command": "echo", "description": "repeats you",'
        ' "behaviour": [{"given": "Hello", "answer": "Echo: Hello"}], "also_changes": []}'
    )
    add_job(sql, "abc12345", status="running", by="tg:7", request="Create an agent Echo",
            plan=plan, branch="mechanic/echo-abc12345", rounds=2, cost=0.0123,
            aider_seconds=12.5, transcript="aider said things")  # fmt: skip
    chat = say(database, "abc12345", ("stage", "plan"), ("stage", "scaffold"), ("stage", "code"),
               ("stage", "validate (round 1/4)"))  # fmt: skip
    sql(
        "INSERT INTO pull_requests (repository, job_id, branch, base, head_sha, title, body)"
        " VALUES ('persais', 'abc12345', 'mechanic/echo-abc12345', 'main', 'f00d', 't', 'b')"
    )
    number = sql("SELECT number FROM pull_requests WHERE job_id = 'abc12345'")[0][0]
    sql("UPDATE jobs SET pr_number = %s, status = 'opened', message = %s WHERE id = 'abc12345'",
        number, f"Pull request #{number} is open")  # fmt: skip
    sql("INSERT INTO job_traces (job_id, repository, request, outcome, rounds, problems, files,"
        " content_hash, search) VALUES ('abc12345', 'persais', 'r', 'opened', 2,"
        " 'tests/dynamic/test_echo.py failed once', ARRAY['dynamic/agents/echo/agent.py'],"
        " 'h', to_tsvector('r'))")  # fmt: skip
    with console_client(settings, database) as client:
        log_in(client, database, "tg:9", "reader")
        page = client.get("/console/jobs/abc12345")
    assert page.status_code == 200, page.text
    html = page.text
    assert '<span id="job-status" sse-swap="status">opened</span>' in html
    assert f'<a id="job-pull" href="/console/pulls/{number}">' in html
    assert steps_of(html) == chat.split("\n")[1:] == [
        "✓ plan", "✓ scaffold", "✓ code", "⏳ validate (round 1/4)"]  # fmt: skip
    for shown in ("Create an agent Echo", "tg:7", "repeats you", "Echo: Hello", "$0.0123",
                  "12.5 s of Aider", "tests/dynamic/test_echo.py failed once",
                  "dynamic/agents/echo/agent.py", "aider said things",
                  "mechanic/echo-abc12345", f"Pull request #{number} is open"):  # fmt: skip
        assert shown in html, shown
    assert re.search(r"<dt>Repair rounds</dt>\s*<dd>2", html)
    # It is live while progress may still come: the stream picks up after the last step.
    last = sql("SELECT max(seq) FROM job_events WHERE job_id = 'abc12345'")[0][0]
    assert f'sse-connect="/console/jobs/abc12345/events?after={last}"' in html
    assert 'sse-swap="step" hx-swap="beforeend"' in html


def test_the_console_shows_every_line_the_chat_shows_through_queue_resume_and_ending(
    settings: Settings, database: str, sql: Sql
) -> None:
    add_job(sql, "def00001", status="queued")
    # What `MechanicJobs._queue` writes (outbox and job_events in one transaction).
    sql("INSERT INTO job_events (job_id, kind, text) VALUES ('def00001', 'queued', 'queued')")
    with console_client(settings, database) as client:
        log_in(client, database)
        assert steps_of(client.get("/console/jobs/def00001").text) == ["⏳ queued"]
        chat = say(database, "def00001", ("stage", "plan"), ("stage", "scaffold"))
        assert steps_of(client.get("/console/jobs/def00001").text) == chat.split("\n")[1:]
        # The worker died in "scaffold"; the next run says so, and ends badly.
        chat = asyncio.run(_fresh_run(database, "def00001"))
        steps = steps_of(client.get("/console/jobs/def00001").text)
        assert chat.split("\n")[1:] == ["↻ resumed after an interruption (run 2 of 3)",
                                         "✗ plan"]  # fmt: skip
        assert steps == ["✓ plan", "✗ scaffold (interrupted)",
                         "↻ resumed after an interruption (run 2 of 3)", "✗ plan"]  # fmt: skip
        assert steps[-2:] == chat.split("\n")[1:]


async def _fresh_run(database: str, job_id: str) -> str:
    async with AsyncConnectionPool(database, min_size=1, max_size=2, open=False,
                                   configure=_autocommit) as pool:  # fmt: skip
        progress = ChatProgress(pool, job_id, "tg:1", "Create an agent Echo")
        await progress.note("resumed after an interruption (run 2 of 3)")
        await progress("plan")
        await progress.finish(False)
        async with pool.connection() as conn:
            cur = await conn.execute("SELECT text FROM outbox WHERE key = %s",
                                     (f"job:{job_id}:progress",))  # fmt: skip
            row = await cur.fetchone()
    assert row is not None
    return str(row[0])


def test_a_request_with_markup_is_shown_escaped(
    settings: Settings, database: str, sql: Sql
) -> None:
    evil = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    add_job(sql, "e0000001", request=evil, by='<b>mallory</b>', status="failed", message=evil,
            plan='{"description": "<script>plan()</script>"}')  # fmt: skip
    say(database, "e0000001", ("stage", "<script>stage()</script>"))
    with console_client(settings, database) as client:
        log_in(client, database)
        for path in ("/console/jobs", "/console/jobs/e0000001"):
            html = client.get(path).text
            assert "&lt;script&gt;alert(" in html, path
            for raw in ("<script>alert", "<script>plan", "<img src=x", "<b>mallory"):
                assert raw not in html, (path, raw)
        assert "&lt;script&gt;stage()" in client.get("/console/jobs/e0000001").text


def test_a_stranger_gets_the_login_page_and_no_job_text(
    settings: Settings, database: str, sql: Sql
) -> None:
    add_job(sql, "5ecre7", request="Create an agent Sesame", by="tg:42")
    say(database, "5ecre7", ("stage", "plan"))
    with console_client(settings, database) as client:
        for path in ("/console/jobs", "/console/jobs/5ecre7", "/console/jobs/5ecre7/events",
                     "/console/jobs?requested_by=tg:42"):  # fmt: skip
            answer = client.get(path)
            assert answer.status_code == 401, path
            assert "Sesame" not in answer.text
            assert "tg:42" not in answer.text
            assert "text/event-stream" not in answer.headers["content-type"]


def test_a_reader_may_read_and_an_unknown_job_is_404(
    settings: Settings, database: str, sql: Sql
) -> None:
    add_job(sql, "r0000001", request="Create an agent Reader")
    with console_client(settings, database) as client:
        log_in(client, database, "tg:5", "reader")
        assert "Create an agent Reader" in client.get("/console/jobs").text
        assert "Create an agent Reader" in client.get("/console/jobs/r0000001").text
        missing = client.get("/console/jobs/nothere")
        assert missing.status_code == 404
        assert client.get("/console/jobs/nothere/events").status_code == 404


# Live progress over a real server: Starlette's TestClient and httpx's ASGITransport read a
# response to its end before handing it over, so only a socket shows what streams.


@contextmanager
def browser(settings: Settings, database: str, role: str = "reader") -> Iterator[httpx.Client]:
    with (
        running_server(settings, database, worker=False) as (url, _runtime),
        httpx.Client(base_url=url, timeout=10) as client,
    ):
        answer = client.get(f"/console/login/{mint_link(database, 'tg:5', role)}")
        assert answer.status_code == 303
        yield client


def read_events(lines: Iterator[str], until: Callable[[dict[str, str]], bool],
                seconds: float = 5.0) -> list[dict[str, str]]:  # fmt: skip
    """Parse server-sent events until one satisfies `until` (comments are skipped)."""
    deadline = time.monotonic() + seconds
    events: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for line in lines:
        if time.monotonic() > deadline:
            raise AssertionError(f"no such event in {seconds} s; saw {events}")
        if line == "":
            if current:
                events.append(current)
                if until(current):
                    return events
            current = {}
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        current[name] = current[name] + "\n" + value if name in current else value
    raise AssertionError(f"the stream ended; saw {events}")


def listeners(sql: Sql) -> int:
    return int(sql("SELECT count(*) FROM pg_stat_activity WHERE query = 'LISTEN job_events'")[0][0])


def test_a_step_said_after_connecting_arrives_over_the_stream_within_a_second(
    settings: Settings, database: str, sql: Sql
) -> None:
    add_job(sql, "11ve0001", status="running")
    say(database, "11ve0001", ("stage", "plan"))
    last = sql("SELECT max(seq) FROM job_events")[0][0]
    with browser(settings, database) as client:
        page = client.get("/console/jobs/11ve0001")
        assert steps_of(page.text) == ["⏳ plan"]
        with (
            client.stream("GET", f"/console/jobs/11ve0001/events?after={last}") as stream,
            client.stream("GET", f"/console/jobs/11ve0001/events?after={last}") as other,
        ):
            assert stream.headers["content-type"].startswith("text/event-stream")
            lines, others = stream.iter_lines(), other.iter_lines()
            first = read_events(lines, lambda e: e.get("event") == "pull")
            assert {"event": "status", "data": "running"} in first
            assert not any(e.get("event") == "step" for e in first)  # nothing after `last`
            read_events(others, lambda e: e.get("event") == "pull")
            assert listeners(sql) == 1  # two watchers, one LISTEN connection
            said = time.monotonic()
            say(database, "11ve0001", ("stage", "scaffold"))
            [*_, step] = read_events(lines, lambda e: e.get("event") == "step")
            assert time.monotonic() - said < 1.0
            seq = sql("SELECT max(seq) FROM job_events")[0][0]
            assert step["id"] == str(seq)
            new = f'<li id="job-step-{seq}" class="step step-running">⏳ scaffold</li>'
            done = f'<li id="job-step-{last}" class="step step-done" hx-swap-oob="true">✓ plan</li>'
            assert new in step["data"]
            assert done in step["data"]
            assert read_events(others, lambda e: e.get("event") == "step")[-1] == step
            # The job ends: its status changes, its last line is marked, and the stream ends.
            sql("UPDATE jobs SET status = 'failed', message = 'no' WHERE id = '11ve0001'")
            status = read_events(lines, lambda e: e.get("event") == "status")
            assert status[-1]["data"] == "failed"
            say(database, "11ve0001", ("finish", "failed"))
            ending = read_events(lines, lambda e: e.get("event") == "done")
            assert any("✗ scaffold" in e.get("data", "") for e in ending)
            # The end brings what the job recorded (its message here), out of band.
            record = ending[-1]["data"]
            assert '<div id="job-record" hx-swap-oob="true">' in record
            assert "What the job said at its end" in record
            assert list(lines) == []
        deadline = time.monotonic() + 5
        while listeners(sql) and time.monotonic() < deadline:  # the last watcher left
            time.sleep(0.05)
        assert listeners(sql) == 0


def test_a_reconnecting_browser_gets_what_it_missed_by_last_event_id(
    settings: Settings, database: str, sql: Sql
) -> None:
    add_job(sql, "11ve0002", status="running")
    say(database, "11ve0002", ("stage", "plan"))
    seen = sql("SELECT max(seq) FROM job_events")[0][0]
    say(database, "11ve0002", ("stage", "scaffold"), ("stage", "code"))
    with browser(settings, database) as client:
        headers = {"last-event-id": str(seen)}
        # Last-Event-ID wins over the page's `after`.
        with client.stream("GET", "/console/jobs/11ve0002/events?after=0", headers=headers) as s:
            events = read_events(s.iter_lines(), lambda e: "⏳ code" in e.get("data", ""))
        steps = [e for e in events if e.get("event") == "step"]
        assert [int(e["id"]) for e in steps] == [seen + 1, seen + 2]
        assert "⏳ scaffold" in steps[0]["data"]
        assert "✓ plan" in steps[0]["data"]
        assert "✓ scaffold" in steps[1]["data"]
        # Closing the browser releases its watcher and, the last one gone, the LISTEN.
        deadline = time.monotonic() + 5
        while listeners(sql) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert listeners(sql) == 0


def test_a_stranger_gets_no_stream(settings: Settings, database: str, sql: Sql) -> None:
    add_job(sql, "11ve0003", request="Create an agent Hidden")
    say(database, "11ve0003", ("stage", "plan"))
    with running_server(settings, database, worker=False) as (url, _runtime):
        answer = httpx.get(f"{url}/console/jobs/11ve0003/events", timeout=5)
        assert answer.status_code == 401
        assert "Hidden" not in answer.text
        assert "text/event-stream" not in answer.headers["content-type"]


def test_a_job_started_from_the_chat_shows_queued_as_the_chat_does(
    settings: Settings, database: str
) -> None:
    from app.mechanic_jobs.service import MechanicJobs

    queued: list[str] = []

    async def defer(conn: Any, job_id: str) -> None:  # the queue, at the boundary
        queued.append(job_id)

    async def never_asked(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("nothing is asked when a job is queued")

    async def start() -> tuple[str, str]:
        async with AsyncConnectionPool(database, min_size=1, max_size=2, open=False,
                                       configure=_autocommit) as pool:  # fmt: skip
            jobs = MechanicJobs(settings, pool, defer=defer, ask=never_asked)
            job_id = await jobs.start(conversation="tg:3", user="tg:3", request="Create Echo")
            async with pool.connection() as conn:
                cur = await conn.execute("SELECT text FROM outbox WHERE key = %s",
                                         (f"job:{job_id}:progress",))  # fmt: skip
                row = await cur.fetchone()
            assert row is not None
            return job_id, str(row[0])

    job_id, chat = asyncio.run(start())
    assert queued == [job_id]
    with console_client(settings, database) as client:
        log_in(client, database)
        page = client.get(f"/console/jobs/{job_id}").text
    assert steps_of(page) == chat.split("\n")[1:] == ["⏳ queued"]
    assert '<span id="job-status" sse-swap="status">queued</span>' in page


def test_a_quiet_stream_keeps_alive_and_ends_when_the_server_stops(
    settings: Settings, database: str, sql: Sql, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.console.pages import jobs

    monkeypatch.setattr(jobs, "KEEP_ALIVE_SECONDS", 0.4)
    monkeypatch.setattr(jobs, "TICK_SECONDS", 0.2)
    add_job(sql, "11ve0004", status="running")
    with (
        running_server(settings, database, worker=False) as (url, runtime),
        httpx.Client(base_url=url, timeout=5) as client,
    ):
        assert client.get(f"/console/login/{mint_link(database, 'tg:5', 'reader')}").is_redirect
        with client.stream("GET", "/console/jobs/11ve0004/events") as stream:
            lines = stream.iter_lines()
            read_events(lines, lambda e: e.get("event") == "pull")
            assert next(line for line in lines if line.startswith(":")) == ": keep-alive"
            runtime.ask_to_stop()  # SIGTERM: uvicorn waits for open streams, so they end
            started = time.monotonic()
            for line in lines:  # keep-alives, until the stream ends
                assert time.monotonic() - started < 2, "the stream outlived the server's stop"
                assert line.startswith(":") or line == "", line


def test_a_stream_ends_with_its_session(
    settings: Settings, database: str, sql: Sql, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Logging out (or the session expiring) ends a live stream at its next keep-alive: an
    open tab does not keep reading jobs for a session that is gone."""
    from app.console.pages import jobs

    monkeypatch.setattr(jobs, "KEEP_ALIVE_SECONDS", 0.4)
    monkeypatch.setattr(jobs, "TICK_SECONDS", 0.2)
    add_job(sql, "5e55e001", status="running")
    with (
        running_server(settings, database, worker=False) as (url, _runtime),
        httpx.Client(base_url=url, timeout=5) as client,
    ):
        assert client.get(f"/console/login/{mint_link(database, 'tg:5', 'reader')}").is_redirect
        with client.stream("GET", "/console/jobs/5e55e001/events") as stream:
            lines = stream.iter_lines()
            read_events(lines, lambda e: e.get("event") == "pull")
            assert next(line for line in lines if line.startswith(":")) == ": keep-alive"
            sql("DELETE FROM console_sessions")  # what logging out does to the row
            started = time.monotonic()
            for line in lines:  # until the stream ends
                assert time.monotonic() - started < 3, "the stream outlived its session"
                assert line.startswith(":") or line == "", line


def test_a_finished_jobs_stream_replays_its_steps_and_ends(
    settings: Settings, database: str, sql: Sql
) -> None:
    add_job(sql, "f1n15h01", status="running")
    say(database, "f1n15h01", ("stage", "plan"), ("stage", "pull request"), ("finish", "ok"))
    sql("UPDATE jobs SET status = 'opened', pr_number = 7 WHERE id = 'f1n15h01'")
    # A job whose status ended but whose run never said so (a worker killed between the two
    # writes) is not watched for ever: after a minute it counts as ended.
    add_job(sql, "f1n15h02", status="running", minutes_ago=2)
    say(database, "f1n15h02", ("stage", "code"))
    sql("UPDATE jobs SET status = 'failed', updated_at = now() - interval '2 minutes'"
        " WHERE id = 'f1n15h02'")  # fmt: skip
    with console_client(settings, database) as client:  # ends by itself: TestClient reads it
        log_in(client, database, "tg:5", "reader")
        body = client.get("/console/jobs/f1n15h01/events").text
        settled = client.get("/console/jobs/f1n15h02/events").text
        page = client.get("/console/jobs/f1n15h01").text
    events = read_events(iter(body.split("\n")), lambda e: e.get("event") == "done")
    steps = [e for e in events if e.get("event") == "step"]
    assert len(steps) == 3  # plan, pull request, the finish marking it done
    assert "✓ pull request" in steps[-1]["data"]
    assert {"event": "status", "data": "opened"} in events
    assert {
        "event": "pull",
        "data": '<a id="job-pull" href="/console/pulls/7">pull request #7</a>',
    } in events
    assert "event: done" in settled
    # The page of an ended job does not connect at all.
    assert "sse-connect" not in page
    assert steps_of(page) == ["✓ plan", "✓ pull request"]


def test_the_pull_request_link_is_the_consoles_page_locally_and_githubs_on_github() -> None:
    from app.console.pages.jobs import pull_link

    job = {"pr_number": 5, "local_pull": None, "pr_url": "https://github.com/o/r/pull/5"}
    assert pull_link(job, local_forge=False) == "https://github.com/o/r/pull/5"
    assert pull_link(job, local_forge=True) == "/console/pulls/5"
    assert pull_link({**job, "local_pull": 5}, local_forge=False) == "/console/pulls/5"
    assert pull_link({**job, "pr_url": "javascript:alert(1)"}, local_forge=False) is None
    assert pull_link({**job, "pr_number": None}, local_forge=True) is None


def test_the_feed_listens_again_after_its_connection_is_cut_and_loses_nothing(
    settings: Settings, database: str, sql: Sql
) -> None:
    add_job(sql, "11ve0005", status="running")
    say(database, "11ve0005", ("stage", "plan"))
    with (
        browser(settings, database) as client,
        client.stream("GET", "/console/jobs/11ve0005/events") as stream,
    ):
        lines = stream.iter_lines()
        read_events(lines, lambda e: e.get("event") == "pull")
        cut = sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                  " WHERE query = 'LISTEN job_events'")  # fmt: skip
        assert cut == [(True,)]
        say(database, "11ve0005", ("stage", "scaffold"))  # said while nobody listens
        events = read_events(lines, lambda e: "⏳ scaffold" in e.get("data", ""))
        assert events[-1]["event"] == "step"
        deadline = time.monotonic() + 5
        while listeners(sql) != 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert listeners(sql) == 1  # listening again
        say(database, "11ve0005", ("stage", "code"))
        read_events(lines, lambda e: "⏳ code" in e.get("data", ""), seconds=2)


def test_an_event_frames_every_kind_of_line_end_so_text_cannot_start_a_field() -> None:
    from app.console import live

    framed = live.event("step", "one\rid: 99\r\nevent: done\nfour", event_id=3)
    assert framed == (
        "id: 3\nevent: step\ndata: one\ndata: id: 99\ndata: event: done\ndata: four\n\n"
    )
