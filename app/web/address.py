"""Where the running `persais serve` answers: it writes its address into PERSAIS_HOME once
listening, and whatever wants to send a person there reads it (`persais console-link`, and
[View PR] on the local forge when PERSAIS_PUBLIC_URL is unset)."""

from __future__ import annotations

import json
import os
from pathlib import Path

ADDRESS_FILE = "serve.json"  # in PERSAIS_HOME


def write_address(home: Path, url: str) -> None:
    """`persais serve`, once listening: where it answers."""
    home.mkdir(parents=True, exist_ok=True)
    target = home / ADDRESS_FILE
    partial = target.with_suffix(".tmp")
    partial.write_text(json.dumps({"url": url, "pid": os.getpid()}))
    partial.replace(target)


def running_address(home: Path) -> str | None:
    """The address a live `persais serve` wrote, if its process is still there."""
    try:
        data = json.loads((home / ADDRESS_FILE).read_text())
        os.kill(int(data["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    url = data.get("url")
    return url if isinstance(url, str) else None
