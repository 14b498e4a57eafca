"""Where a person reads a local pull request: the console's page for it once the console
runs (its address is handed in), else the command that prints it. GitHub's pull requests
have their own pages and never come here."""

from __future__ import annotations


def pull_link(number: int, console: str | None = None) -> str:
    """The [View PR] address of local pull request `number`; `console` is the console's
    base URL (http or https) when it is up."""
    if console:
        return f"{console.rstrip('/')}/pulls/{number}"
    return f"persais pr show {number}"
