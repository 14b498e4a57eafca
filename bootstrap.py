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

import collections
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
AIDER_VENV = ROOT / ".aider-venv"
AIDER_PYTHONS = ("3.12", "3.11", "3.10")  # what aider-chat's release supports
AIDER_RANGE = ((3, 10), (3, 12))


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
        aider_python(),
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
            if run([python, "-m", "venv", "--clear", str(path)]) != 0:
                sys.exit(
                    f"bootstrap: {python} could not make {path.name} (on Debian or Ubuntu: "
                    "apt install python3.X-venv, for its version)"
                )
    pip = [str(path / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
    _check(run([*pip, "-q", "install", "--upgrade", "pip"]))
    pip_install([*pip, "install", "--progress-bar", "off", *install], path.name)
    marker.write_text(stamp)


def pip_install(command: list[str], label: str) -> None:
    """pip says hundreds of lines (or nothing, with -q, for minutes): show one counter of
    the packages it found instead, and pip's own last lines if it fails."""
    started = time.monotonic()
    tty = sys.stdout.isatty()
    tail: collections.deque[str] = collections.deque(maxlen=40)
    found = 0
    with subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            tail.append(line)
            if line.startswith("Collecting "):
                found += 1
                if tty:
                    print(f"\rbootstrap: {label}: {found} packages found", end="", flush=True)
                elif found % 25 == 0:
                    print(f"bootstrap: {label}: {found} packages found", flush=True)
            elif line.startswith("Installing collected packages"):
                where = "\r" if tty else ""
                print(f"{where}bootstrap: {label}: installing {found} packages ...", flush=True)
        code = proc.wait()
    if tty:
        print("\r", end="")  # the counter's line is written over
    if code != 0:
        print("".join(tail), end="", flush=True)
        sys.exit(f"bootstrap: installing into {label} failed (pip exit {code}); pip's end is above")
    seconds = time.monotonic() - started
    print(f"bootstrap: {label}: ready ({found} packages, {seconds:.0f} s)", flush=True)


def aider_python(current: tuple[int, int] = sys.version_info[:2]) -> str:
    """This Python when aider-chat supports it, else a `python3.1x` on the PATH that says
    it is one, else stop with what to install."""
    if AIDER_RANGE[0] <= current <= AIDER_RANGE[1]:
        return sys.executable
    for version in AIDER_PYTHONS:
        found = shutil.which(f"python{version}")
        if found and _python_version(found) is not None:
            print(f"bootstrap: Aider runs on {found} (this Python is {current[0]}.{current[1]})")
            return found
    sys.exit(
        f"bootstrap: aider-chat needs Python 3.10-3.12 and this is {current[0]}.{current[1]}; "
        "none of python3.12, python3.11, python3.10 is on the PATH.\n"
        "Install one next to this Python, for example: apt install python3.12 python3.12-venv"
        " | brew install python@3.12 | uv python install 3.12 (then put it on the PATH);"
        " then run bootstrap again."
    )


def _python_version(python: str) -> tuple[int, int] | None:
    """The version `python` really is, when aider-chat supports it (a name can lie)."""
    try:
        said = subprocess.run(
            [python, "-c", "import sys; print(*sys.version_info[:2])"],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout.split()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    version = (int(said[0]), int(said[1]))
    return version if AIDER_RANGE[0] <= version <= AIDER_RANGE[1] else None


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
