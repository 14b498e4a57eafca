"""First steps: `persais serve` says what to do next; `/` leads to the console, whose overview
shows the version and each part's health to a person who logged in (`/ready` stays the
machines' JSON)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from app.console.health import parts
from app.next_step import page_url
from tests.support.processes import free_port, persais, persais_env, wait_ready

ROOT = Path(__file__).resolve().parents[1]


def test_serve_prints_the_next_step_and_a_console_link_opens_the_health_of_each_part(
    tmp_path: Path, database: str
) -> None:
    port = free_port()
    log = tmp_path / "serve.log"
    env = persais_env(tmp_path / "home", database)
    with persais(["serve", "--no-worker", "--port", str(port)], env, tmp_path, log) as serve:
        base = f"http://127.0.0.1:{port}"
        ready = wait_ready(base, serve)
        said = _wait_for(log, "The console")
        front = httpx.get(f"{base}/", timeout=10)
        stranger = httpx.get(f"{base}/console/", timeout=10)
        # `persais console-link` finds the running server in PERSAIS_HOME.
        link = subprocess.run(
            [sys.executable, "-m", "app", "console-link"], env=env, cwd=tmp_path,
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert link.returncode == 0, link.stderr
        url = link.stdout.splitlines()[0]
        assert url.startswith(f"{base}/console/login/")
        with httpx.Client(timeout=10, follow_redirects=True) as browser:
            page = browser.get(url)
    assert f"Persais is up: {base}/\n" in said
    assert " chat\n" in said
    assert " console-link" in said
    assert front.status_code == 307
    assert front.headers["location"] == "/console/"
    assert stranger.status_code == 401
    assert ready["database"]["kind"] not in stranger.text  # a stranger learns nothing
    assert page.status_code == 200
    assert str(page.url) == f"{base}/console/"
    html = page.text
    assert f"Version {ready['version']['package']}" in html
    assert ready["version"]["commit"][:12] in html
    kind = ready["database"]["kind"]
    assert f'<tr class="ok"><th scope="row">database</th><td>ok</td><td>{kind}</td></tr>' in html
    assert "<strong>ready</strong>" in html


def test_a_broken_part_is_named_broken_and_the_server_not_ready() -> None:
    report = _report(
        database={"kind": "external", "ok": False, "error": "OperationalError"},
        migrations={"applied": [1], "pending": [2, 3], "ok": False},
        ready=False,
    )
    assert parts(report)[:2] == [
        ("database", "broken", "external (OperationalError)"),
        ("migrations", "broken", "pending: 2, 3"),
    ]


def test_agents_warm_up_and_release_as_a_person_reads_them() -> None:
    report = _report(
        agents={
            "loaded": [{"name": "echo", "command": "echo"}],
            "quarantined": [{"name": "bad", "reason": "<script>x</script>"}],
        },
        release={"sha": "0123456789abcdef", "source": "ledger"},
        **{"warm-up": {"finished": False, "ok": False, "note": "importing"}},
    )
    rows = {part: (state, detail) for part, state, detail in parts(report)}
    assert rows["agents"] == (
        "broken",
        "1 loaded: /echo; quarantined: bad (<script>x</script>)",
    )
    assert rows["release"] == ("ok", "0123456789ab (ledger)")
    assert rows["warm-up"] == ("starting", "importing")


def test_the_page_address_a_person_can_open() -> None:
    assert page_url("0.0.0.0", 8000) == "http://127.0.0.1:8000/"  # noqa: S104
    assert page_url("::", 8000) == "http://[::1]:8000/"
    assert page_url("::1", 9) == "http://[::1]:9/"
    assert page_url("localhost", 80) == "http://localhost:80/"


def test_the_next_command_is_one_this_person_can_type() -> None:
    """`persais` when it is on the PATH, else the path to the installed script."""
    script = Path(sys.executable).parent / "persais"
    code = "from app.next_step import persais_command; print(persais_command())"

    def said(path: str) -> str:
        env = {**os.environ, "PATH": path}
        return subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, env=env,
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip

    assert said(f"{script.parent}:/usr/bin:/bin") == "persais"
    assert said("/usr/bin:/bin") == os.path.relpath(script, ROOT)


def _report(**changes: Any) -> dict[str, Any]:
    report: dict[str, Any] = {
        "version": {"package": "0.1.0", "commit": "abc"},
        "database": {"kind": "embedded", "ok": True},
        "migrations": {"applied": [1], "pending": [], "ok": True},
        "worker": {"mode": "in process", "running": True, "ok": True},
        "ready": True,
    }
    report.update(changes)
    return report


def _wait_for(log: Path, text: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        said = log.read_text(errors="replace")
        if text in said:
            return said
        time.sleep(0.1)
    raise TimeoutError(f"{text!r} not in the log: {log.read_text(errors='replace')}")
