#!/usr/bin/env python3
"""Set Persais up on a machine that has only Python 3.11+ and git, then run it or test it.

    python3 bootstrap.py serve      install what is missing, then `persais serve`
    python3 bootstrap.py test       install what is missing, then lint, types and the tests
    python3 bootstrap.py setup      install only

Two virtualenvs, both inside the checkout and both ignored by git:
  .venv/         Persais itself (editable) with its development tools
  .aider-venv/   aider-chat at the version pinned in mechanic/aider_version.py. Aider pins
                 100+ exact versions of its own, so it never shares an environment with us;
                 Persais runs it as a subprocess (AIDER_BIN defaults to this one).
Each is rebuilt only when what it was built from changes.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
AIDER_VENV = ROOT / ".aider-venv"
AIDER_PYTHONS = ("3.12", "3.11", "3.10")  # what aider-chat's release supports


def main(argv: list[str]) -> int:
    if sys.version_info < (3, 11):  # noqa: UP036 - this file must speak on an old Python too
        sys.exit("persais needs Python 3.11 or newer (this is {}.{})".format(*sys.version_info))
    if not argv or argv[0] not in {"setup", "serve", "test", "check"}:
        print(__doc__)
        return 2
    command, rest = argv[0], argv[1:]
    setup()
    persais = VENV / "bin" / "persais"
    if command == "serve":
        os.execv(str(persais), [str(persais), "serve", *rest])  # noqa: S606 - become the server
    if command in {"test", "check"}:
        code = check()
        if code != 0 or command == "check":
            return code
        return run([_bin("pytest"), *rest])
    return 0


def setup() -> None:
    _ensure_venv(
        VENV,
        sys.executable,
        stamp=_digest(ROOT / "pyproject.toml"),
        install=["-e", f"{ROOT}[dev]"],
    )
    version = re.search(
        r'AIDER_CHAT_VERSION = "([^"]+)"', (ROOT / "mechanic" / "aider_version.py").read_text()
    )
    assert version is not None, "mechanic/aider_version.py lost its pin"
    _ensure_venv(
        AIDER_VENV,
        _aider_python(),
        stamp=version.group(1),
        install=[f"aider-chat=={version.group(1)}"],
    )


def check() -> int:
    """The quality gates, the same here and in CI."""
    for command in (
        [_bin("ruff"), "check", "."],
        [_bin("ruff"), "format", "--check", "."],
        [_bin("mypy")],
    ):
        code = run(command)
        if code != 0:
            return code
    return 0


def _ensure_venv(path: Path, python: str, *, stamp: str, install: list[str]) -> None:
    marker = path / ".persais-stamp"
    if marker.exists() and marker.read_text() == stamp and (path / "bin" / "python").exists():
        return
    print(f"bootstrap: preparing {path.name} ...", flush=True)
    if not (path / "bin" / "python").exists():
        if python == sys.executable:
            venv.create(path, with_pip=True, clear=True)
        else:
            _check(run([python, "-m", "venv", "--clear", str(path)]))
    pip = [str(path / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "-q"]
    _check(run([*pip, "install", "--upgrade", "pip"]))
    _check(run([*pip, "install", *install]))
    marker.write_text(stamp)


def _aider_python() -> str:
    if sys.version_info[:2] <= (3, 12):
        return sys.executable
    for version in AIDER_PYTHONS:
        found = shutil.which(f"python{version}")
        if found:
            return found
    sys.exit("aider-chat needs Python 3.10-3.12; install one of them next to this Python")


def _bin(name: str) -> str:
    return str(VENV / "bin" / name)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run(command: list[str]) -> int:
    return subprocess.run(command, cwd=ROOT).returncode


def _check(code: int) -> None:
    if code != 0:
        sys.exit(f"bootstrap: install step failed (exit {code})")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
