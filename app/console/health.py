"""Each part's health in words, from the readiness report (`Readiness.report`, the same one
`/ready` gives machines): the console's overview shows it as a table."""

from __future__ import annotations

from typing import Any


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
