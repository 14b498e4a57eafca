"""A seccomp filter the agent host installs on itself before it imports the agent's code.

No new processes (fork, vfork, clone, clone3), no exec, no sockets (an anonymous
`socketpair`, which asyncio's loop uses to wake itself, reaches nothing), no tracing, no mounts or
namespaces, no kernel keyrings, BPF or io_uring: each fails with EPERM. A syscall from
another architecture's table (x32 on x86-64) fails the same way, and a process of a foreign
architecture is killed. A filter cannot be removed, and `no_new_privs` keeps it across
anything. Resource limits on processes do not bind root; this does.

Written as classic BPF through ctypes, so the host needs nothing beyond the stdlib; the
program is small enough to read here in one go (`program()`).
"""

from __future__ import annotations

import ctypes
import platform
import struct

# Syscall numbers by architecture: (audit arch, {name: number}).
_X86_64 = (
    0xC000003E,
    {
        "socket": 41, "clone": 56, "fork": 57, "vfork": 58, "execve": 59,
        "ptrace": 101, "personality": 135, "pivot_root": 155, "chroot": 161, "mount": 165,
        "umount2": 166, "init_module": 175, "kexec_load": 246, "add_key": 248,
        "request_key": 249, "keyctl": 250, "unshare": 272, "perf_event_open": 298,
        "setns": 308, "process_vm_readv": 310, "process_vm_writev": 311, "finit_module": 313,
        "bpf": 321, "execveat": 322, "userfaultfd": 323, "io_uring_setup": 425, "clone3": 435,
    },
)  # fmt: skip
_AARCH64 = (
    0xC00000B7,
    {
        "umount2": 39, "mount": 40, "pivot_root": 41, "chroot": 51, "personality": 92,
        "unshare": 97, "kexec_load": 104, "init_module": 105, "ptrace": 117, "socket": 198,
        "add_key": 217, "request_key": 218, "keyctl": 219, "clone": 220,
        "execve": 221, "perf_event_open": 241, "setns": 268, "process_vm_readv": 270,
        "process_vm_writev": 271, "finit_module": 273, "bpf": 280, "execveat": 281,
        "userfaultfd": 282, "io_uring_setup": 425, "clone3": 435,
    },
)  # fmt: skip
ARCHITECTURES = {"x86_64": _X86_64, "aarch64": _AARCH64}

_LD_ABS_W = 0x20  # BPF_LD | BPF_W | BPF_ABS
_JEQ = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
_JGE = 0x35  # BPF_JMP | BPF_JGE | BPF_K
_RET = 0x06  # BPF_RET | BPF_K
_KILL_PROCESS = 0x80000000
_ERRNO_EPERM = 0x00050000 | 1
_ALLOW = 0x7FFF0000
_X32_BIT = 0x40000000


class SeccompUnavailable(OSError):
    pass


def program(machine: str | None = None) -> list[tuple[int, int, int, int]]:
    """The filter as (code, jt, jf, k) instructions."""
    machine = machine or platform.machine()
    if machine not in ARCHITECTURES:
        raise SeccompUnavailable(f"no seccomp table for {machine}")
    arch, table = ARCHITECTURES[machine]
    head = [
        (_LD_ABS_W, 0, 0, 4),  # seccomp_data.arch
        (_JEQ, 1, 0, arch),
        (_RET, 0, 0, _KILL_PROCESS),
        (_LD_ABS_W, 0, 0, 0),  # seccomp_data.nr
    ]
    checks: list[tuple[int, int, int]] = []  # (code, k) pairs, jt filled below
    if machine == "x86_64":
        checks.append((_JGE, 0, _X32_BIT))
    checks += [(_JEQ, 0, number) for number in sorted(table.values())]
    body = []
    for index, (code, _, k) in enumerate(checks):
        to_deny = len(checks) - index  # skip the rest of the checks and the ALLOW
        body.append((code, to_deny, 0, k))
    return [*head, *body, (_RET, 0, 0, _ALLOW), (_RET, 0, 0, _ERRNO_EPERM)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def install() -> None:
    """Set no_new_privs and load the filter on this process (and its threads to come)."""
    code = program()
    raw = b"".join(struct.pack("HBBI", *instruction) for instruction in code)
    buffer = ctypes.create_string_buffer(raw, len(raw))
    fprog = _SockFprog(len(code), ctypes.cast(buffer, ctypes.c_void_p))
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_no_new_privs, pr_set_seccomp, seccomp_mode_filter = 38, 22, 2
    if libc.prctl(pr_set_no_new_privs, 1, 0, 0, 0) != 0:
        raise SeccompUnavailable(f"prctl(NO_NEW_PRIVS) failed: errno {ctypes.get_errno()}")
    if libc.prctl(pr_set_seccomp, seccomp_mode_filter, ctypes.byref(fprog), 0, 0) != 0:
        raise SeccompUnavailable(f"prctl(SECCOMP) failed: errno {ctypes.get_errno()}")
