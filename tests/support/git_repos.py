"""Small real git repositories for tests."""

from __future__ import annotations

import subprocess
from pathlib import Path


def home_repository(path: Path) -> Path:
    """A repository shaped like Persais's home repository: `dynamic/agents/` on `main`."""
    (path / "dynamic" / "agents").mkdir(parents=True)
    (path / "dynamic" / "agents" / "README.md").write_text("agents\n")
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    subprocess.run(["git", "-C", str(path), "add", "-A"], check=True)
    subprocess.run(
        ["git", "-C", str(path), "-c", "user.name=t", "-c", "user.email=t@example.com",
         "commit", "-qm", "init"], check=True,
    )  # fmt: skip
    return path
