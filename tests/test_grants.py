"""Grants: what a release adds or widens (`app.agents.grants`), read from manifests at a
commit (`app.deploy.granting`), said in the Mechanic's pull request body, and pinned by the
reviewer to the manifest's changed lines (`app.review.grants`)."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any

from app.agents.grants import Change, describe, overlaid, widened
from app.deploy import granting
from app.review import grants as review_grants
from app.review.diff import Diff, FileDiff
from mechanic.job import JobOutcome, pull_request_body
from mechanic.plan import Plan

HEAD = 'name = "weather"\ncommand = "weather"\ndescription = "forecasts"\nversion = "0.1.0"\n'
LINE1 = {"name": "line1", "host": "10.0.0.5", "port": 502, "units": [1], "addresses": [[0, 99]]}


def http(*hosts: str) -> dict[str, Any]:
    return {"http": {"hosts": list(hosts)}}


def modbus(*devices: dict[str, Any]) -> dict[str, Any]:
    return {"modbus": {"devices": list(devices)}}


def test_a_new_capability_and_a_new_host_are_new_or_widened() -> None:
    assert [str(c) for c in widened({}, {"weather": http("api.open-meteo.com")})] == [
        "weather: http → api.open-meteo.com (new)"
    ]
    assert widened({"weather": {}}, {"weather": {"state": {"why": "cities"}}}) == [
        Change("weather", "state", "its own key-value store", "new")
    ]
    more = widened({"weather": http("a.example")}, {"weather": http("a.example", "b.example")})
    assert [str(c) for c in more] == ["weather: http → b.example (widened)"]


def test_a_new_device_is_new_and_one_reaching_further_is_widened() -> None:
    before = {"plc": modbus(LINE1)}
    line2 = {**LINE1, "name": "line2", "host": "10.0.0.6"}
    (added,) = widened(before, {"plc": modbus(LINE1, line2)})
    assert str(added) == "plc: modbus → line2 10.0.0.6:502 unit 1 registers 0-99 read-only (new)"
    for wider in (
        {**LINE1, "write": True},
        {**LINE1, "units": [1, 2]},
        {**LINE1, "addresses": [[0, 100]]},
        {**LINE1, "addresses": [[0, 99], [200, 210]]},
        {**LINE1, "port": 5020},
    ):
        (change,) = widened(before, {"plc": modbus(wider)})
        assert (change.agent, change.capability, change.how) == ("plc", "modbus", "widened")
    (write,) = widened(before, {"plc": modbus({**LINE1, "write": True})})
    assert write.what == "line1 10.0.0.5:502 unit 1 registers 0-99 read/write"


def test_nothing_new_is_nothing_widened() -> None:
    held = {"weather": {**http("a.example", "b.example"), "state": {}}, "plc": modbus(LINE1)}
    assert widened(held, held) == []
    narrower = {
        "weather": http("a.example"),  # fewer hosts, no state
        "plc": modbus({**LINE1, "addresses": [[10, 20]]}),  # inside what was granted
    }
    assert widened(held, narrower) == []
    assert widened(held, {}) == []  # agents removed grant nothing
    assert widened({"echo": {}}, {"echo": {}}) == []


def test_a_change_overlays_the_agents_it_touches() -> None:
    live = {"weather": http("a.example"), "plc": modbus(LINE1)}
    after = overlaid(live, {"weather": http("a.example", "b.example"), "plc": None})
    assert after == {"weather": http("a.example", "b.example")}
    assert describe({"weather": http("b.example", "a.example"), "echo": {}}) == [
        "weather: http → a.example, b.example"
    ]


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip


def commit(repo: Path, files: dict[str, str | None], message: str) -> None:
    for path, text in files.items():
        target = repo / path
        if text is None:
            target.unlink()
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", message)


def test_a_change_is_read_from_its_manifests_at_its_commit(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    commit(repo, {
        "dynamic/agents/README.md": "agents\n",
        "dynamic/agents/plc/agent.toml": HEAD.replace("weather", "plc"),
        "dynamic/agents/old/agent.toml": HEAD.replace("weather", "old"),
    }, "base")  # fmt: skip
    git(repo, "checkout", "-qb", "feature")
    asks = HEAD + '\n[permissions.http]\nhosts = ["api.open-meteo.com"]\nwhy = "forecasts"\n'
    commit(repo, {
        "dynamic/agents/weather/agent.toml": asks,
        "dynamic/agents/weather/agent.py": "import socket  # code is never read for grants\n",
        "dynamic/agents/old/agent.toml": None,
        "dynamic/agents/broken/agent.toml": "name = [\n",
    }, "weather")  # fmt: skip
    found = asyncio.run(granting.asked(repo, "feature", "main"))
    assert found == {
        "broken": None,
        "old": None,
        "weather": {"http": {"hosts": ["api.open-meteo.com"], "why": "forecasts"}},
    }
    live = {"plc": {}, "old": {}}
    assert [str(c) for c in widened(live, overlaid(live, found))] == [
        "weather: http → api.open-meteo.com (new)"
    ]


def test_the_pull_request_body_lists_the_grants_or_says_none_new() -> None:
    plan = Plan.model_validate({
        "kind": "agent", "name": "weather", "command": "weather", "description": "forecasts",
        "behaviour": [{"say": "Paris", "expect": "sunny"}], "question": None,
    })  # fmt: skip
    outcome = JobOutcome("opened", "")
    changed = ["dynamic/agents/weather/agent.toml"]
    body = pull_request_body("j1", "weather", plan, outcome, changed,
                             ["weather: http → api.open-meteo.com (new)"])  # fmt: skip
    assert "## Grants\n\n- weather: http → api.open-meteo.com (new)\n" in body
    assert "needs an admin's Deploy" in body
    assert "## Grants\n\ngrants: none new\n" in pull_request_body(
        "j1", "weather", plan, outcome, changed, []
    )
    assert "## Grants" not in pull_request_body("j1", "weather", plan, outcome, changed)
    assert granting.card([]) == ["grants: none new"]
    refused = granting.refusal(widened({}, {"weather": http("api.open-meteo.com")}))
    assert refused == (
        "this release grants weather: http → api.open-meteo.com (new); an admin must deploy it"
    )


def manifest_diff(before: str | None, after: str) -> Diff:
    """The pull request files entry of one manifest, with its patch made by git."""
    old = before.splitlines() if before else []
    new = after.splitlines()
    hunk = f"@@ -{1 if old else 0},{len(old)} +1,{len(new)} @@\n"
    patch = hunk + "".join(f"-{line}\n" for line in old) + "".join(f"+{line}\n" for line in new)
    path = "dynamic/agents/weather/agent.toml"
    return Diff({path: FileDiff.parse(path, patch, status="modified" if before else "added")})


def test_the_reviewer_pins_each_new_grant_to_its_line() -> None:
    path = "dynamic/agents/weather/agent.toml"
    after = (
        HEAD + "\n[permissions.state]\n\n[permissions.http]\n"
        'hosts = [\n  "a.example",\n  "api.open-meteo.com",\n]\nwhy = "forecasts"\n'
        "\n[permissions.modbus]\n[[permissions.modbus.devices]]\n"
        'name = "line1"\nhost = "10.0.0.5"\nunits = [1]\n'
    )
    before = HEAD + '\n[permissions.http]\nhosts = ["a.example"]\n'
    found = review_grants.findings(manifest_diff(before, after), {path: after}, {path: before})
    lines = after.splitlines()
    said = {f.rule: (f.line, f.start_line, f.severity) for f in found}
    assert said == {
        "grant.state:its own key-value store": (6, None, "warning"),
        "grant.http:api.open-meteo.com": (lines.index('  "api.open-meteo.com",') + 1, None,
                                          "warning"),
        "grant.modbus:line1 10.0.0.5:502 unit 1 registers 0-65535 read-only": (
            len(lines), lines.index("[[permissions.modbus.devices]]") + 1, "warning"),
    }  # fmt: skip
    http_finding = next(f for f in found if f.rule.startswith("grant.http"))
    assert http_finding.message.startswith(
        "this agent asks for http → api.open-meteo.com (widened)"
    )
    # Unchanged grants say nothing; a new agent's grants are all new.
    assert review_grants.findings(manifest_diff(after, after), {path: after}, {path: after}) == []
    new = review_grants.findings(manifest_diff(None, before), {path: before}, {})
    assert [(f.rule, f.line) for f in new] == [("grant.http:a.example", 7)]
    assert new[0].message.startswith("this agent asks for http → a.example (new)")
