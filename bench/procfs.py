"""What Linux's /proc says about processes, for the benchmarks: a process's descendants,
its memory (VmRSS and Pss), its CPU time, and how contended the machine's CPUs are."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants, parents before children (bwrap → bwrap → python)."""
    tree, seen = [pid], 0
    while seen < len(tree):
        each = tree[seen]
        seen += 1
        with contextlib.suppress(FileNotFoundError):
            children = Path(f"/proc/{each}/task/{each}/children").read_text()
            tree += [int(child) for child in children.split()]
    return tree


def memory_kb(pid: int) -> dict[str, int | str]:
    """A process's name, VmRSS and Pss (its share of pages shared with others), in KB."""
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    fields = dict(line.split(":", 1) for line in status if ":" in line)
    pss = next(line for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
               if line.startswith("Pss:"))  # fmt: skip
    return {"name": fields["Name"].strip(), "rss": int(fields["VmRSS"].split()[0]),
            "pss": int(pss.split()[1])}  # fmt: skip


def cpu_seconds(pid: int) -> float:
    """User and system CPU a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_pressure() -> float:
    """How noisy the machine is: the share of the last 10 s in which some task waited for
    a CPU (Linux PSI, `some avg10`), in percent; NaN where the kernel does not say."""
    try:
        first = Path("/proc/pressure/cpu").read_text().split()
    except OSError:
        return float("nan")
    return float(first[1].removeprefix("avg10="))
