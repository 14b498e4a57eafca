"""`/`: the page someone opens right after `persais serve` — which build answers, whether
each part works, and what to do next. `/ready` says the same to machines, in JSON.

One small template over one report (`Readiness.report`), no assets: it must render while
half the service is still starting.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from app.web.health import Readiness

WALKTHROUGH = "docs/first-evolution.md"


@dataclass
class FrontPage:
    readiness: Readiness
    persais: str = "persais"  # how this person starts `persais` (app/next_step.py)
    console: str | None = None  # the console's address, once it runs (its own issue)

    async def page(self, request: Request) -> Response:
        report = await self.readiness.report()
        return HTMLResponse(render(report, persais=self.persais, console=self.console))


def parts(report: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(part, "ok" | "starting" | "broken", detail) for each part the report names."""
    rows: list[tuple[str, str, str]] = []
    database = report["database"]
    detail = database["kind"] + (f" ({database['error']})" if "error" in database else "")
    rows.append(("database", _state(database["ok"]), detail))
    pending = report["migrations"]["pending"]
    rows.append(("migrations", _state(not pending), _pending(pending)))
    worker = report["worker"]
    rows.append(("worker", _state(worker["ok"]), worker["mode"]))
    if "agents" in report:
        rows.append(("agents", *_agents(report["agents"])))
    if "release" in report:
        release = report["release"]
        sha = release.get("sha")
        rows.append(("release", "ok", f"{sha[:12]} ({release.get('source')})" if sha else "none"))
    if "warm-up" in report:
        warm = report["warm-up"]
        if not warm["finished"]:
            rows.append(("warm-up", "starting", str(warm.get("note", ""))))
        elif warm.get("error"):
            rows.append(("warm-up", "broken", str(warm["error"])))
        else:
            rows.append(("warm-up", "ok", f"{warm.get('seconds', 0):.1f} s"))
    return rows


def render(report: dict[str, Any], *, persais: str = "persais", console: str | None = None) -> str:
    version = report["version"]
    overall = "ready" if report["ready"] else "not ready yet"
    rows = "\n".join(
        f'<tr class="{state}"><th>{escape(part)}</th><td>{state}</td><td>{escape(detail)}</td></tr>'
        for part, state, detail in parts(report)
    )
    console_line = (
        f'<p><a href="{escape(console, quote=True)}">Open the console</a></p>' if console else ""
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Persais</title>
<style>
body {{ font: 16px/1.5 system-ui, sans-serif; max-width: 42rem; margin: 2rem auto; }}
th {{ text-align: left; padding-right: 1rem; }} td {{ padding-right: 1rem; }}
.ok td:nth-child(2) {{ color: green; }} .broken td:nth-child(2) {{ color: #b00; }}
code {{ background: #f2f2f2; padding: 0 .2rem; }}
</style></head><body>
<h1>Persais</h1>
<p>Version {escape(version["package"])}, commit <code>{escape(version["commit"][:12])}</code>.
This server is <strong>{overall}</strong>.</p>
<table>
{rows}
</table>
{console_line}
<h2>Next</h2>
<p>In another terminal, run <code>{escape(persais)} chat</code> and type <code>/help</code>; then
<code>/mechanic Create an agent Echo that repeats my messages</code>. The walkthrough is
<code>{WALKTHROUGH}</code> in the repository; <code>{escape(persais)} doctor</code> checks the
configuration.</p>
<p><a href="/ready">/ready</a> (JSON) · <a href="/metrics">/metrics</a></p>
</body></html>
"""


def _state(ok: bool) -> str:
    return "ok" if ok else "broken"


def _pending(pending: list[int]) -> str:
    if not pending:
        return "up to date"
    return "pending: " + ", ".join(str(v) for v in pending)


def _agents(agents: dict[str, Any]) -> tuple[str, str]:
    loaded = agents.get("loaded")
    if loaded is None:
        return "ok", str(agents.get("note", "none in this process"))
    quarantined = agents.get("quarantined") or []
    names = ", ".join(f"/{a['command']}" for a in loaded if isinstance(a, dict))
    detail = f"{len(loaded)} loaded" + (f": {names}" if names else "")
    if agents.get("note") == "starting":
        return "starting", "loading"
    if quarantined:
        broken = ", ".join(f"{q['name']} ({q['reason']})" for q in quarantined)
        return "broken", f"{detail}; quarantined: {broken}"
    return "ok", detail
