"""What build this is: the package version and the git commit it was built from."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from importlib import metadata

from app.settings import CHECKOUT_ROOT


@dataclass(frozen=True)
class BuildInfo:
    package: str
    commit: str

    def as_dict(self) -> dict[str, str]:
        return {"package": self.package, "commit": self.commit}


def build_info(commit: str | None = None) -> BuildInfo:
    """`commit` comes from PERSAIS_GIT_COMMIT (set in the image); else ask git."""
    try:
        package = metadata.version("persais")
    except metadata.PackageNotFoundError:
        package = "0+unknown"
    return BuildInfo(package=package, commit=commit or _git_commit() or "unknown")


def _git_commit() -> str | None:
    if not (CHECKOUT_ROOT / ".git").exists():
        return None
    try:
        out = subprocess.run(
            ["git", "-C", str(CHECKOUT_ROOT), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None
