"""Running untrusted work in a subprocess under bubblewrap, and ending it.

Two profiles, each spelled out whole in one function, read-only by default:

- `aider_profile`: Aider writes the code and talks to the model, so it keeps the host's
  network and sees the whole filesystem read-only except the folders it is given.
- `validation_profile`: the generated code's checks (ruff, its tests, the load smoke) run
  with nothing: no network (a network namespace of its own, with only its own loopback),
  their own pid, ipc and uts namespaces, a new session, no capabilities (we may run as
  root), an environment built from nothing, and a filesystem made of the system's folders
  (of /etc, a few files), the interpreter and the packages the checks import, all
  read-only, a private /tmp, the worktree read-only (a test cannot rewrite the change it
  validates) and a scratch folder, the one place it may write. No PERSAIS_HOME, no checkout
  with its `.env`, no key file.
  Bubblewrap itself starts with an empty environment: inside, /proc/1/environ is its own.

`run_sealed` runs a check under the validation profile. Its first lines (`_SEAL`) set the
`Limits` and install the seccomp filter of `mechanic.seccomp` (no second process, no exec,
no unix socket) before any generated code is imported, then run the check in that same
process. Without bubblewrap the check runs sealed that way but not sandboxed, and says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import shutil
import signal
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from mechanic import seccomp

# The system's folders a check may read (each bound read-only if it exists, or recreated as
# the symlink it is on a merged-/usr system).
SYSTEM_FOLDERS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# Of /etc, only what a Python check may read (the loader's cache, the time zone, user names):
# not the whole folder, where an operator's files (and /etc/shadow, which root reads even
# without capabilities) could be printed into a report that reaches the model and the chat.
SYSTEM_FILES = ("/etc/ld.so.cache", "/etc/localtime", "/etc/passwd", "/etc/group",
                "/etc/nsswitch.conf")  # fmt: skip
TMP_BYTES = 64 * 1024 * 1024  # the private /tmp
OUTPUT_BYTES = 256 * 1024  # what is kept of a check's output (its end)


@dataclass(frozen=True)
class Limits:
    """What one sandboxed check may use; CPU seconds follow its time limit."""

    address_space: int = 2 * 1024**3
    open_files: int = 256
    file_size: int = 16 * 1024**2
    # Core dumps: none, always.


LIMITS = Limits()


@dataclass(frozen=True)
class Finished:
    code: int  # 124: timed out
    output: str  # stdout and stderr together, the end of it
    sandboxed: bool


# A check's first lines, in its own process: set the limits, install the seccomp filter,
# then run the check here (`-m module …` or `-c code`) or, for a trusted tool that needs to
# start its binary, become it (`exec`).
_SEAL = """\
import ctypes, os, resource, runpy, sys
limits, program, how, *args = sys.argv[1:]
names = ("RLIMIT_AS", "RLIMIT_CPU", "RLIMIT_NOFILE", "RLIMIT_FSIZE", "RLIMIT_CORE")
for name, value in zip(names, map(int, limits.split(","))):
    resource.setrlimit(getattr(resource, name), (value, value))
if program:
    code = ctypes.create_string_buffer(bytes.fromhex(program))
    class Program(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
    prog = Program(len(code.raw) // 8, ctypes.addressof(code))
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
    NO_NEW_PRIVS, SECCOMP, FILTER = 38, 22, 2  # PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, its mode
    if prctl(NO_NEW_PRIVS, 1, 0, 0, 0) or prctl(SECCOMP, FILTER, ctypes.addressof(prog), 0, 0):
        raise SystemExit("seccomp: " + os.strerror(ctypes.get_errno()))
if how == "exec":
    os.execv(sys.executable, [sys.executable, *args])
elif args[0] == "-m":
    sys.argv = args[1:]
    runpy.run_module(args[1], run_name="__main__", alter_sys=True)
else:
    sys.argv = ["-c", *args[2:]]
    exec(compile(args[1], "<string>", "exec"), {"__name__": "__main__"})
"""


def bwrap() -> str | None:
    return shutil.which("bwrap")


def aider_profile(*writable: Path) -> list[str]:
    """Aider's bwrap prefix: the whole filesystem read-only except `writable` (give the
    process a TMPDIR among them), the host's network and the environment it is given; []
    without bwrap. /tmp is not replaced by a tmpfs: the interpreters and virtualenvs
    themselves may live under /tmp."""
    found = bwrap()
    if found is None:
        return []
    binds: list[str] = []
    for folder in writable:
        binds += ["--bind", str(folder.resolve()), str(folder.resolve())]
    return [
        found, "--ro-bind", "/", "/", *binds,
        "--dev", "/dev", "--proc", "/proc", "--die-with-parent", "--",
    ]  # fmt: skip


def validation_profile(
    bwrap: str, *, worktree: Path, scratch: Path, read_only: Sequence[Path],
    env: Mapping[str, str],
) -> list[str]:  # fmt: skip
    """The bwrap prefix for generated code's checks (see the module's docstring). Start
    bwrap with an empty environment: `env` is set inside."""
    args = [
        bwrap,
        "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
        "--die-with-parent", "--new-session", "--cap-drop", "ALL",
        "--clearenv", *[a for name, value in env.items() for a in ("--setenv", name, value)],
    ]  # fmt: skip
    for folder in map(Path, SYSTEM_FOLDERS):
        if folder.is_symlink():
            args += ["--symlink", os.readlink(folder), str(folder)]
        elif folder.is_dir():
            args += ["--ro-bind", str(folder), str(folder)]
    for file in SYSTEM_FILES:
        if Path(file).exists():
            args += ["--ro-bind", file, file]
    private_tmp = ["--size", str(TMP_BYTES), "--tmpfs", "/tmp"]  # noqa: S108 - its own tmpfs
    args += ["--dev", "/dev", "--proc", "/proc", *private_tmp]
    # After the tmpfs, so that an interpreter or a worktree under /tmp shows through it.
    for folder in _outermost([*interpreter(), *read_only, worktree]):
        args += ["--ro-bind", str(folder), str(folder)]
    args += ["--bind", str(scratch.resolve()), str(scratch.resolve())]
    args += ["--remount-ro", "/", "--chdir", str(worktree.resolve())]
    return [*args, "--"]


def interpreter() -> list[Path]:
    """The folders this Python runs from: its virtualenv (with its site-packages) and the
    installation under it."""
    folders = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    return [Path(folder).resolve() for folder in sorted(folders)]


async def run_sealed(
    args: Sequence[str], *, worktree: Path, scratch: Path, read_only: Sequence[Path] = (),
    time_limit: float, may_exec: bool = False, limits: Limits = LIMITS,
) -> Finished:  # fmt: skip
    """Run this Python with `args` (`-m module …` or `-c code …`) in `worktree` under the
    validation profile, with `limits`, the seccomp filter (`may_exec`: a trusted tool that
    starts its own binary) and a time limit, in a process group of its own; its output and
    exit code. Cancelling kills it."""
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(scratch.resolve()),
        "TMPDIR": str(scratch.resolve()),
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    numbers = (limits.address_space, math.ceil(time_limit), limits.open_files,
               limits.file_size, 0)  # fmt: skip
    program = seccomp.program(may_exec=may_exec) or b""
    sealed = [sys.executable, "-c", _SEAL, ",".join(map(str, numbers)), program.hex(),
              "exec" if may_exec else "run", *args]  # fmt: skip
    found = bwrap()
    if found is None:
        command, outer_env = sealed, env
    else:
        jail = validation_profile(
            found, worktree=worktree, scratch=scratch, read_only=read_only, env=env
        )
        command, outer_env = [*jail, *sealed], {}
    proc = await asyncio.create_subprocess_exec(
        *command, cwd=worktree, env=outer_env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        output = await asyncio.wait_for(_tail(proc.stdout), time_limit)
        code = await proc.wait()
    except TimeoutError:
        kill_group(proc.pid)
        await proc.wait()
        return Finished(124, f"timed out after {time_limit:.0f} s", found is not None)
    except asyncio.CancelledError:
        kill_group(proc.pid)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(proc.wait(), 5)
        raise
    return Finished(code, output.decode(errors="replace"), found is not None)


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


async def _tail(stream: asyncio.StreamReader) -> bytes:
    kept = b""
    while chunk := await stream.read(65536):
        kept = (kept + chunk)[-OUTPUT_BYTES:]
    return kept


def _outermost(folders: Sequence[Path]) -> list[Path]:
    """Folders to bind, without those already inside another (or inside a system folder),
    parents first."""
    system = [Path(f) for f in SYSTEM_FOLDERS if Path(f).is_dir() and not Path(f).is_symlink()]
    kept: list[Path] = []
    for folder in sorted({f.resolve() for f in folders if f.exists()}, key=lambda p: len(p.parts)):
        if not any(folder.is_relative_to(outer) for outer in [*system, *kept]):
            kept.append(folder)
    return kept
