"""`/console/agents`: every agent — loaded or quarantined (and why), its command, what it is
granted, whether it runs sandboxed — and what it did: answers, errors and answer time.

Where the facts come from:
- a process whose agents are loaded (`persais serve` with its worker) knows its agent set
  (`Runtime.agents_summary`, the same report `/ready` gives), sandbox included;
- otherwise (the web-only process, a bare app) the database knows the last load: the
  `agents.loaded` audit entry and the `agent.quarantined` entries written with it;
- grants are the release in service's, as the ledger recorded them (no release yet: the
  manifests of the image's own agents);
- answers, errors and time are this process's Prometheus series (`app.agents.metering`, the
  ones `/metrics` serves); a process that answered nothing has no data.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from app.agents import grants, metering
from app.console.web import Console
from app.deploy import ledger

NAV = [("Agents", "/console/agents")]
QUARANTINES = 200  # at most this many quarantine entries of one load are read


@dataclass
class Row:
    name: str
    state: str  # "loaded" | "quarantined"
    reason: str = ""
    command: str = ""
    version: str = ""
    builtin: bool | None = None  # None: not known (read from the database)
    grants: str = ""
    sandbox: str = ""
    figures: metering.Figures | None = None
    traceback: str = ""  # of its quarantine, as the load recorded it
    stored: tuple[int, int] | None = None  # its `state` capability's keys and bytes


@dataclass
class Known:
    rows: list[Row]
    source: str  # where the list comes from, said on the page
    at: datetime | None = None
    release: str | None = None


async def _from_database(conn: AsyncConnection[Any]) -> Known:
    """The last load any process recorded: its agents, and those it quarantined."""
    cur = await conn.execute(
        "SELECT id, detail, at FROM audit_log WHERE (action COLLATE \"C\") = 'agents.loaded'"
        " ORDER BY id DESC LIMIT 1"
    )
    load = await cur.fetchone()
    if load is None:
        return Known([], "the database: no load of the agents is recorded yet")
    cur = await conn.execute(
        "SELECT DISTINCT ON (subject) subject, detail->>'reason' FROM audit_log"
        " WHERE (action COLLATE \"C\") = 'agent.quarantined' AND id > %s"
        " ORDER BY subject, id DESC LIMIT %s",
        (load[0], QUARANTINES),
    )
    quarantined = {str(subject).removeprefix("agent:"): str(why or "") for subject, why in
                   await cur.fetchall()}  # fmt: skip
    detail = load[1] or {}
    rows = [Row(name=str(name), state="loaded") for name in detail.get("loaded", [])]
    rows += [Row(name=name, state="quarantined", reason=why) for name, why in quarantined.items()]
    return Known(
        rows, "the database: the last load recorded (no agents run in this process)",
        at=load[2], release=detail.get("release"),
    )  # fmt: skip


def _from_process(summary: dict[str, Any]) -> Known | None:
    """This process's agent set, if it has one loaded."""
    if summary.get("loaded") is None or "fingerprint" not in summary:
        return None
    sandboxed = summary.get("sandboxed")
    sandbox = "bubblewrap sandbox" if sandboxed else "unsandboxed: limits only (no bubblewrap)"
    rows = [
        Row(
            name=str(a["name"]),
            state="loaded",
            command=str(a["command"]),
            version=str(a["version"]),
            builtin=bool(a["builtin"]),
            sandbox="in the core (built-in)" if a["builtin"] else sandbox,
        )
        for a in summary["loaded"]
    ]
    rows += [
        Row(name=str(q["name"]), state="quarantined", reason=str(q["reason"]))
        for q in summary.get("quarantined", [])
    ]
    loaded_at = summary.get("loaded_at")
    return Known(
        rows, "this process's agents", at=datetime.fromisoformat(loaded_at) if loaded_at else None
    )


def _granted(held: dict[str, Any], name: str) -> str:
    """'http → api.open-meteo.com; state' for one agent; '' for none."""
    if name not in held:
        return ""
    return "; ".join(line.partition(": ")[2] for line in grants.describe({name: held[name]}))


async def _details(conn: AsyncConnection[Any], rows: list[Row]) -> None:
    """Each quarantined agent's traceback (its latest quarantine entry) and what each agent
    keeps through the `state` capability (table agent_state, capped per agent)."""
    names = [row.name for row in rows]
    cur = await conn.execute(
        "SELECT agent, count(*), coalesce(sum(bytes), 0) FROM agent_state"
        " WHERE agent = ANY(%s) GROUP BY agent",
        (names,),
    )
    stored = {str(agent): (int(keys), int(size)) for agent, keys, size in await cur.fetchall()}
    quarantined = [f"agent:{row.name}" for row in rows if row.state == "quarantined"]
    cur = await conn.execute(
        "SELECT DISTINCT ON (subject) subject, detail->>'traceback' FROM audit_log"
        " WHERE subject = ANY(%s) AND (action COLLATE \"C\") = 'agent.quarantined'"
        " ORDER BY subject, id DESC",
        (quarantined,),
    )
    traces = {str(subject).removeprefix("agent:"): str(trace or "") for subject, trace in
              await cur.fetchall()}  # fmt: skip
    for row in rows:
        row.stored = stored.get(row.name)
        if row.state == "quarantined":
            row.traceback = traces.get(row.name, "")


def routes(console: Console) -> list[BaseRoute]:
    async def page(request: Request) -> Response:
        runtime = console.runtime
        known = _from_process(runtime.agents_summary()) if runtime is not None else None
        async with console.pool.connection() as conn:
            if known is None:
                known = await _from_database(conn)
            current = await ledger.current(conn)
            await _details(conn, known.rows)
        held = (
            current.granted if current is not None
            else grants.of_folder(console.settings.resolved_agents_dir())
        )  # fmt: skip
        counted = metering.figures()
        for row in known.rows:
            row.grants = _granted(held, row.name)
            row.figures = counted.get(row.name)
        known.rows.sort(key=lambda r: (r.state != "quarantined", r.builtin is True, r.name))
        return console.page(
            request, "agents.html", title="Agents", known=known, current=current,
            metered=bool(counted),
        )  # fmt: skip

    return [Route("/agents", page, methods=["GET"])]
