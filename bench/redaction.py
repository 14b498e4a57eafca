"""Redaction benchmark: how fast secrets are cut out of text (`mechanic/redaction.py`).

    .venv/bin/python bench/redaction.py [--repeat 5]

Every text file git tracks in this checkout is redacted `--repeat` times, with two
configured values to look for (as the indexer does with the process's own secrets): the
total throughput (MB/s, the best of the repeats) and what was found.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mechanic import redaction  # noqa: E402

CONFIGURED = ["configured-value-0123456789", "another-configured-secret-42"]


def texts() -> dict[str, str]:
    listed = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    found = {}
    for path in listed:
        try:
            found[path] = (ROOT / path).read_text()
        except (UnicodeDecodeError, OSError):
            continue  # binary, or gone from the working tree
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    files = texts()
    size = sum(len(t.encode()) for t in files.values())
    best = float("inf")
    for _ in range(args.repeat):
        started = time.perf_counter()
        for text in files.values():
            redaction.redact(text, CONFIGURED)
        best = min(best, time.perf_counter() - started)
    holding = {p: redaction.find(t, CONFIGURED) for p, t in files.items()}
    holding = {p: found for p, found in holding.items() if found}
    print(f"{len(files)} files, {size / 1e6:.2f} MB: {best * 1000:.0f} ms,"
          f" {size / 1e6 / best:.1f} MB/s (best of {args.repeat})")  # fmt: skip
    print(f"{len(holding)} files hold something secret-shaped:")
    for path, found in sorted(holding.items()):
        print(f"  {path}: " + ", ".join(f"{s.kind} (line {s.line(files[path])})" for s in found))
    return 0


if __name__ == "__main__":
    sys.exit(main())
