"""Which way imports point: `mechanic` is a library, and the web process stays light."""

from __future__ import annotations

import subprocess
import sys


def modules_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return set(done.stdout.split())


def test_mechanic_imports_nothing_from_app() -> None:
    loaded = modules_after("import mechanic, mechanic.aider_version")
    assert not {m for m in loaded if m == "app" or m.startswith("app.")}


def test_the_web_process_does_not_load_aider_or_githubs_sdk() -> None:
    loaded = modules_after("import app.web.server, app.cli")
    assert not {m for m in loaded if m.startswith(("aider", "githubkit", "mechanic."))}
