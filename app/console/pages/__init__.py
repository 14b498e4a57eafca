"""The console's pages, in the order of the navigation. Each module exports `NAV`, a list
of (label, path) entries, and `routes(console)`, its Starlette routes under /console."""

from __future__ import annotations

from app.console.pages import (
    agents,
    audit_log,
    inbox,
    jobs,
    memory,
    overview,
    pulls,
    questions,
    releases,
)

PAGES = [overview, questions, jobs, pulls, releases, agents, inbox, audit_log, memory]
