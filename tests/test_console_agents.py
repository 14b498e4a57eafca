"""The console's Agents page: every agent, loaded or quarantined with the reason, its grants
and sandbox, and its answers, errors and time from this process's metrics."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from prometheus_client import generate_latest

from app.agents import metering
from app.settings import Settings
from tests.support.console import console_client, log_in

Sql = Callable[..., list[tuple[Any, ...]]]


def _row(html: str, name: str) -> str:
    found = re.search(rf'<tr class="(\w+)">\s*<th scope="row">{name}\b(.*?)</tr>', html, re.S)
    assert found is not None, f"no row for {name}"
    return found.group(1) + found.group(2)


def _audit(sql: Sql, action: str, subject: str, detail: dict[str, Any]) -> None:
    sql(
        "INSERT INTO audit_log (actor, action, subject, detail) VALUES ('persais', %s, %s, %s)",
        action, subject, json.dumps(detail),
    )  # fmt: skip


def _last_load(sql: Sql) -> None:
    """What a process records when it loads its agents (app/conversations.py): the set, then
    each quarantined agent with its reason."""
    _audit(sql, "agents.loaded", "old", {"loaded": ["gone"], "release": None})
    _audit(sql, "agent.quarantined", "agent:gone-too", {"reason": "an old load"})
    loaded = ["help", "console-sayer", "console-quiet"]
    _audit(sql, "agents.loaded", "abc", {"loaded": loaded, "release": "d" * 40})
    reason = "SyntaxError: <b>bad</b> & worse"
    trace = 'Traceback (most recent call last):\n  File "agent.py", line 3\n    <i>oops</i>'
    _audit(sql, "agent.quarantined", "agent:console-shout", {"reason": reason, "traceback": trace})


def test_the_agents_page_shows_what_the_database_knows_without_a_process_of_agents(
    settings: Settings, database: str, sql: Sql
) -> None:
    _last_load(sql)
    grants = {"console-sayer": {"http": {"hosts": ["api.example.org"]}, "state": {}}}
    sql("INSERT INTO releases (sha, source, repository, pr_number, pressed_by, grants) VALUES"
        " (%s, 'merge', 'persais', 3, 'cli:ada', %s)", "d" * 40, json.dumps(grants))  # fmt: skip
    sql("INSERT INTO release_events (release, status, actor) VALUES (1, 'live', 'cli:ada')")
    for key, size in (("a", 10), ("b", 20)):
        sql("INSERT INTO agent_state (agent, key, value, bytes) VALUES ('console-sayer', %s,"
            " '1'::jsonb, %s)", key, size)  # fmt: skip
    metering.observe("console-sayer", ok=True, seconds=0.02)
    metering.observe("console-sayer", ok=True, seconds=0.04)
    metering.observe("console-sayer", ok=False, seconds=0.03)
    figures = metering.figures()["console-sayer"]
    with console_client(settings, database) as client:
        log_in(client, database, "cli:bob", "reader")
        page = client.get("/console/agents")
        assert page.status_code == 200
        html = page.text
        assert '<table id="agents">' in html
        assert "the last load recorded" in html
        shout = _row(html, "console-shout")
        assert shout.startswith("quarantined")
        assert "SyntaxError: &lt;b&gt;bad&lt;/b&gt; &amp; worse" in shout
        assert "<b>bad</b>" not in html
        assert "<summary>Traceback</summary>" in shout
        assert 'File "agent.py", line 3\n    &lt;i&gt;oops&lt;/i&gt;' in shout.replace("&#34;", '"')
        sayer = _row(html, "console-sayer")
        assert sayer.startswith("loaded")
        assert "http → api.example.org" in sayer
        assert "state" in sayer
        assert "2 key(s), 30 B" in sayer
        mean = round((figures.mean_seconds or 0) * 1000)
        assert f"<td>{figures.answers}</td><td>{figures.errors}</td>" in sayer
        assert f"<td>{mean} ms</td>" in sayer
        quiet = _row(html, "console-quiet")
        assert "no data" in quiet
        assert "none" in quiet  # no grant
        assert "gone" not in re.sub(r"gone-too", "", html).split('<table id="agents">')[1]
        assert "release 1" in html  # the grants are the live release's
        # Quarantined agents come first.
        assert html.index("console-shout") < html.index("console-quiet")
    # The same series are what /metrics serves.
    served = generate_latest(metering.REGISTRY).decode()
    assert 'persais_agent_answers_total{agent="console-sayer"}' in served
    assert 'persais_agent_errors_total{agent="console-sayer"}' in served


def test_with_no_load_recorded_the_page_says_so_and_reads_the_image_manifests(
    settings: Settings, database: str
) -> None:
    with console_client(settings, database) as client:
        log_in(client, database)
        page = client.get("/console/agents")
        assert page.status_code == 200
        assert "no load of the agents is recorded yet" in page.text
        assert "No agents are known yet." in page.text
        assert "No release is in service yet" in page.text


def test_a_stranger_sees_no_agent(settings: Settings, database: str, sql: Sql) -> None:
    _last_load(sql)
    with console_client(settings, database) as client:
        answer = client.get("/console/agents")
        assert answer.status_code == 401
        for name in ("console-shout", "console-sayer", "SyntaxError", 'id="agents"'):
            assert name not in answer.text
