"""What to do after `persais serve` is up, in words a newcomer can type as they stand:
`persais chat` if `persais` is on the PATH, else the path bootstrap installed it at."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path


def persais_command(cwd: Path | None = None) -> str:
    """How this person starts `persais` from `cwd`: `persais`, `.venv/bin/persais`, or
    `python -m app` when no script is installed beside this Python."""
    script = Path(sys.executable).parent / "persais"
    found = shutil.which("persais")
    if found is not None and Path(found).resolve() == script.resolve():
        return "persais"
    if script.exists():
        try:
            return os.path.relpath(script, cwd or Path.cwd())
        except ValueError:
            return str(script)
    return f"{sys.executable} -m app"


def page_url(host: str, port: int) -> str:
    # Listening on every address is reached, from here, on the loopback one.
    everywhere = host in ("0.0.0.0", "")  # noqa: S104 - read, not bound
    shown = "127.0.0.1" if everywhere else "[::1]" if host == "::" else host
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/"


def serve_banner(host: str, port: int, persais: str) -> str:
    return (
        f"Persais is up: {page_url(host, port)}\n"
        f"Next, in another terminal: {persais} chat\n"
        "  then type: /mechanic Create an agent Echo that repeats my messages\n"
        f"The console (jobs, pull requests, releases): {persais} console-link"
    )
