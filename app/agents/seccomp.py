"""The seccomp filter an agent host installs on itself before it imports the agent's code.

The program is `mechanic.seccomp`'s, in its strictest form: no new processes or threads, no
exec, no sockets at all (an anonymous `socketpair`, which asyncio's loop uses to wake itself,
reaches nothing), no tracing, no mounts or namespaces, no keyrings, BPF or io_uring, and no
syscall of another architecture. A filter cannot be removed, and `no_new_privs` keeps it
across anything. Resource limits on processes do not bind root; this does.
"""

from __future__ import annotations

import ctypes

from mechanic import seccomp


class SeccompUnavailable(OSError):
    pass


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def program() -> bytes:
    found = seccomp.program(sockets="all", threads=False)
    if found is None:
        raise SeccompUnavailable("no seccomp table for this architecture")
    return found


def install() -> None:
    """Set no_new_privs and load the filter on this process."""
    raw = program()
    buffer = ctypes.create_string_buffer(raw, len(raw))
    fprog = _SockFprog(len(raw) // 8, ctypes.cast(buffer, ctypes.c_void_p))
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_no_new_privs, pr_set_seccomp, seccomp_mode_filter = 38, 22, 2
    if libc.prctl(pr_set_no_new_privs, 1, 0, 0, 0) != 0:
        raise SeccompUnavailable(f"prctl(NO_NEW_PRIVS) failed: errno {ctypes.get_errno()}")
    if libc.prctl(pr_set_seccomp, seccomp_mode_filter, ctypes.byref(fprog), 0, 0) != 0:
        raise SeccompUnavailable(f"prctl(SECCOMP) failed: errno {ctypes.get_errno()}")
