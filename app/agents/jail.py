"""Where an agent host runs: every bind, namespace and limit of its sandbox, in one place.

Under bubblewrap a host sees, read-only: `/usr` (and the `/bin` `/lib` links), the Python
interpreter's own prefix, the few files of the agent contract (`/persais/app/agents/…`) and
its release folder (`/agent`). It gets a private tmpfs `/tmp` and its own `/proc` and `/dev`;
new network, pid, ipc and uts namespaces, so no network at all, not even loopback to the
host; `--die-with-parent` and `--new-session`. Not there: `PERSAIS_HOME`, the checkout, the
virtualenv, `.env`, key files, `/etc`, `/home`, `/root`, sockets. bwrap itself starts with
an empty environment (inside the sandbox `/proc/1/environ` is bwrap's), and the host's
environment is built from nothing.

Without bwrap (a macOS laptop) a host is still a process of its own with an empty
environment, limits and (on Linux) the seccomp filter, and says "unsandboxed".
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from app.agents.host import BOOT, NOBODY

# The files of the agent contract a host imports, relative to the checkout.
SDK_FILES = (
    "app/__init__.py",
    "app/agents/__init__.py",
    "app/agents/base.py",
    "app/agents/sdk.py",
    "app/agents/protocol.py",
    "app/agents/loading.py",
    "app/agents/seccomp.py",
    "app/agents/host.py",
    "mechanic/__init__.py",
    "mechanic/seccomp.py",  # the filter's program, shared with validation's sandbox
)
SDK_ROOT = Path(__file__).resolve().parents[2]  # the folder holding app/
INSIDE_SDK = "/persais"
INSIDE_AGENT = "/agent"
TMP = "/tmp"  # noqa: S108 - the sandbox's own private tmpfs
ENVIRONMENT = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": TMP}
MiB = 1 << 20


@dataclass(frozen=True)
class Limits:
    memory_mb: int = 256  # address space
    cpu_seconds: int = 300  # over the host's life; a spinning call is killed at its deadline
    open_files: int = 64
    file_mb: int = 8  # the largest file it may write (in its tmpfs)
    tmp_mb: int = 16  # the tmpfs itself

    def rlimits(self) -> dict[str, int]:
        return {
            "as": self.memory_mb * MiB,
            "cpu": self.cpu_seconds,
            "nofile": self.open_files,
            "fsize": self.file_mb * MiB,
            "core": 0,
        }


@dataclass(frozen=True)
class Jail:
    """How to start a host. `bwrap` None: unsandboxed."""

    bwrap: str | None
    python: Path = field(default_factory=lambda: interpreter())
    limits: Limits = field(default_factory=Limits)

    @property
    def sandboxed(self) -> bool:
        return self.bwrap is not None

    def describe(self) -> str:
        """One line for /status, /agents and the Deploy card."""
        if self.bwrap is None:
            return "⚠ unsandboxed: bubblewrap is missing, so agents run with limits only"
        return "sandboxed: bubblewrap, no network, read-only release, limits, seccomp"

    def command(self, agent_dir: Path) -> tuple[list[str], dict[str, str], str]:
        """(argv, environment, working folder) for one host of the agent in `agent_dir`."""
        root = os.geteuid() == 0
        config = {
            "agent_dir": INSIDE_AGENT if self.bwrap else str(agent_dir.resolve()),
            "limits": self.limits.rlimits(),
            # Outside a sandbox the interpreter may sit under a folder only root can enter.
            "drop_to": NOBODY if root and self.bwrap else None,
            "seccomp": True,
            "nice": 10,
        }
        sdk = INSIDE_SDK if self.bwrap else str(SDK_ROOT)
        host = [str(self.python), "-I", "-S", "-c", BOOT.format(sdk=sdk), json.dumps(config)]
        if self.bwrap is None:
            return host, dict(ENVIRONMENT), tempfile.gettempdir()
        return [self.bwrap, *self.arguments(agent_dir, root=root), "--", *host], {}, "/"

    def arguments(self, agent_dir: Path, *, root: bool) -> list[str]:
        args = [
            "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
            "--unshare-cgroup-try", "--die-with-parent", "--new-session", "--clearenv",
        ]  # fmt: skip
        if root:  # the host drops to an unprivileged uid itself, before the agent's code
            args += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
        else:  # an unprivileged bwrap needs a user namespace of its own
            args += ["--unshare-user"]
        for name, value in ENVIRONMENT.items():
            args += ["--setenv", name, value]
        args += ["--ro-bind", "/usr", "/usr"]
        for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
            if os.path.islink(top):
                args += ["--symlink", os.readlink(top), top]
            elif os.path.isdir(top):
                args += ["--ro-bind", top, top]
        prefix = Path(sys.base_prefix).resolve()
        if not prefix.is_relative_to("/usr"):
            args += [*_folders(prefix.parent), "--ro-bind", str(prefix), str(prefix)]
        args += _folders(Path(INSIDE_SDK) / "app" / "agents")
        args += _folders(Path(INSIDE_SDK) / "mechanic")
        for relative in SDK_FILES:
            args += ["--ro-bind", str(SDK_ROOT / relative), f"{INSIDE_SDK}/{relative}"]
        args += ["--ro-bind", str(agent_dir.resolve()), INSIDE_AGENT]
        args += ["--proc", "/proc", "--dev", "/dev"]
        args += ["--perms", "1777", "--size", str(self.limits.tmp_mb * MiB), "--tmpfs", TMP]
        args += ["--chdir", TMP]
        return args


def _folders(path: Path) -> list[str]:
    """`--dir` for `path` and its parents, world-readable (bwrap would make them 0700, and
    the host runs as nobody)."""
    args: list[str] = []
    for folder in [*reversed(path.parents), path]:
        if str(folder) != "/":
            args += ["--perms", "0755", "--dir", str(folder)]
    return args


def interpreter() -> Path:
    """The base interpreter (not the virtualenv's: a host needs only the stdlib)."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    candidate = Path(sys.base_prefix) / "bin" / version
    if candidate.exists():
        return candidate.resolve()
    return Path(getattr(sys, "_base_executable", sys.executable)).resolve()


def find_bwrap() -> str | None:
    return shutil.which("bwrap")
