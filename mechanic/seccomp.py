"""The seccomp filters of the sandboxes: validation's (no second process, no unix socket)
and, stricter, an agent host's (no socket at all, no thread; `sockets="all", threads=False`).

A check's first lines install it on themselves (`mechanic.sandbox`), before any generated
code is imported; it cannot be removed, and `no_new_privs` keeps it across anything. It
answers "not permitted" to:

- `fork`, `vfork` and a `clone` without CLONE_THREAD: threads yes, processes no. Limits on
  the number of processes do not bind root, and the tests run as root; this does.
  `clone3` answers "not implemented", so the C library falls back to `clone`, whose flags a
  filter can read (`clone3` passes them behind a pointer);
- `socket(AF_UNIX, …)`: a network namespace does not hide a unix socket that has a path,
  and a parent's socket may sit in a folder the sandbox sees. `socketpair` stays (asyncio's
  event loop wakes itself through one);
- `io_uring_setup` (it opens sockets without the `socket` call), `ptrace`, the kernel
  keyrings, `bpf`, `perf_event_open` and `userfaultfd`: nothing a check needs;
- on x86-64, every x32 call, and every call of another architecture.

- `execve` and `execveat`, unless the check is a trusted program that must start its own
  binary (ruff): it reads the code, it does not run it.

- `mount`, `umount2`, `pivot_root`, `chroot`, `unshare`, `setns`, `personality`, module and
  `kexec` loading, and `process_vm_readv`/`writev`: nothing a check or an agent needs.

An agent host (`app.agents.host`) takes the same program with `sockets="all"` (an agent
reaches the world only through the core) and `threads=False`.

On an architecture not listed here there is no filter (`program()` is None). Stdlib only:
an agent host loads this module inside its sandbox.
"""

from __future__ import annotations

import errno
import platform
import struct

# Syscall numbers by machine: (audit arch, {name: number}).
_ARCHES = {
    "x86_64": (0xC000003E, {
        "socket": 41, "clone": 56, "fork": 57, "vfork": 58, "execve": 59, "ptrace": 101,
        "personality": 135, "pivot_root": 155, "chroot": 161, "mount": 165, "umount2": 166,
        "init_module": 175, "kexec_load": 246, "add_key": 248, "request_key": 249,
        "keyctl": 250, "unshare": 272, "perf_event_open": 298, "setns": 308,
        "process_vm_readv": 310, "process_vm_writev": 311, "finit_module": 313, "bpf": 321,
        "execveat": 322, "userfaultfd": 323, "io_uring_setup": 425, "clone3": 435,
    }),
    "aarch64": (0xC00000B7, {
        "umount2": 39, "mount": 40, "pivot_root": 41, "chroot": 51, "personality": 92,
        "unshare": 97, "kexec_load": 104, "init_module": 105, "ptrace": 117, "socket": 198,
        "add_key": 217, "request_key": 218, "keyctl": 219, "clone": 220, "execve": 221,
        "perf_event_open": 241, "setns": 268, "process_vm_readv": 270,
        "process_vm_writev": 271, "finit_module": 273, "bpf": 280, "execveat": 281,
        "userfaultfd": 282, "io_uring_setup": 425, "clone3": 435,
    }),
}  # fmt: skip
# Refused outright: processes (fork, vfork), and what reaches past the namespaces.
_REFUSED = ("fork", "vfork", "ptrace", "add_key", "request_key", "keyctl", "perf_event_open",
            "bpf", "userfaultfd", "io_uring_setup", "mount", "umount2", "pivot_root", "chroot",
            "unshare", "setns", "personality", "init_module", "finit_module", "kexec_load",
            "process_vm_readv", "process_vm_writev")  # fmt: skip
_X32 = 0x40000000
AF_UNIX = 1
CLONE_THREAD = 0x00010000

# Classic BPF, as the kernel reads it (linux/filter.h, linux/seccomp.h).
_LOAD = 0x20  # BPF_LD | BPF_W | BPF_ABS: A = the 32-bit word at offset k of seccomp_data
_JEQ, _JGE, _JSET = 0x15, 0x35, 0x45  # BPF_JMP | op | BPF_K
_RET = 0x06
_NR, _ARCH, _ARG0 = 0, 4, 16  # offsets in seccomp_data (args[0]'s low word, little-endian)
_ALLOW = 0x7FFF0000
_DENY = 0x00050000 | errno.EPERM
_MISSING = 0x00050000 | errno.ENOSYS

Step = tuple[int, int | str, int | str, int]  # code, jump if true, jump if false, k


def program(
    *, may_exec: bool = False, sockets: str = "unix", threads: bool = True,
    machine: str | None = None,
) -> bytes | None:  # fmt: skip
    """The filter for this machine's architecture (`struct sock_filter`s), or None.
    `sockets`: "unix" refuses unix sockets, "all" every socket; `threads`: False refuses
    `clone` altogether."""
    arch = _ARCHES.get(machine or platform.machine())
    if arch is None:
        return None
    audit, numbers = arch
    steps: list[tuple[str, Step]] = [
        ("", (_LOAD, 0, 0, _ARCH)),
        ("", (_JEQ, 0, "deny", audit)),
        ("", (_LOAD, 0, 0, _NR)),
    ]
    if audit == _ARCHES["x86_64"][0]:
        steps.append(("", (_JGE, "deny", 0, _X32)))
    refused: tuple[str, ...] = _REFUSED if may_exec else (*_REFUSED, "execve", "execveat")
    refused += ("socket",) if sockets == "all" else ()
    refused += ("clone",) if not threads else ()
    steps += [("", (_JEQ, "deny", 0, numbers[n])) for n in refused if n in numbers]
    steps += [
        ("", (_JEQ, "missing", 0, numbers["clone3"])),
        ("", (_JEQ, "socket", 0, numbers["socket"])),
        ("", (_JEQ, "clone", 0, numbers["clone"])),
        ("", (_RET, 0, 0, _ALLOW)),
        ("socket", (_LOAD, 0, 0, _ARG0)),
        ("", (_JEQ, "deny", "allow", AF_UNIX)),
        ("clone", (_LOAD, 0, 0, _ARG0)),
        ("", (_JSET, "allow", "deny", CLONE_THREAD)),
        ("allow", (_RET, 0, 0, _ALLOW)),
        ("deny", (_RET, 0, 0, _DENY)),
        ("missing", (_RET, 0, 0, _MISSING)),
    ]
    return _assemble(steps)


def _assemble(steps: list[tuple[str, Step]]) -> bytes:
    """Steps with named jump targets → `struct sock_filter`s (jumps are relative, forward)."""
    where = {label: i for i, (label, _) in enumerate(steps) if label}

    def offset(target: int | str, at: int) -> int:
        return target if isinstance(target, int) else where[target] - at - 1

    return b"".join(
        struct.pack("=HBBI", code, offset(jt, i), offset(jf, i), k)
        for i, (_, (code, jt, jf, k)) in enumerate(steps)
    )
