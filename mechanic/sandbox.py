"""Running untrusted work in a subprocess: a bubblewrap jail, a PATH we build, and ending
the whole process group."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
from pathlib import Path


def sandbox(*writable: Path) -> list[str]:
    """The bwrap prefix under which the whole filesystem is read-only except `writable`
    (give the process a TMPDIR among them); [] without bwrap. /tmp is not replaced by a
    tmpfs: the interpreters and virtualenvs themselves may live under /tmp."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return []
    binds: list[str] = []
    for folder in writable:
        binds += ["--bind", str(folder.resolve()), str(folder.resolve())]
    return [
        bwrap, "--ro-bind", "/", "/", *binds,
        "--dev", "/dev", "--proc", "/proc", "--die-with-parent", "--",
    ]  # fmt: skip


def search_path(*first: Path) -> str:
    """PATH for a child: `first`, git's folder, the system's. Built rather than inherited,
    so nothing in our environment leaks into the child's."""
    git = shutil.which("git")
    folders = [
        *map(str, first),
        str(Path(git).parent) if git else "",
        "/usr/local/bin",
        "/usr/bin",
        "/bin",
    ]
    return ":".join(dict.fromkeys(f for f in folders if f))


def kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
