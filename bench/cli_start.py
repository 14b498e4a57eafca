"""CLI start benchmark: how long `persais` takes to answer when it does no work — alone (the
short help), `--version` (asks git for the commit), and a typo (the nearest command).

    .venv/bin/python bench/cli_start.py [--repeat 10]

Each is run `--repeat` times as a real process (`python -m app`) in an empty folder; the
median and the range are printed, in milliseconds. Python's own start is printed beside
them (`python -c pass`), since no command can answer faster.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CASES = {
    "python -c pass": ["-c", "pass"],
    "persais": ["-m", "app"],
    "persais --version": ["-m", "app", "--version"],
    "persais sevre": ["-m", "app", "sevre"],
}


def once(args: list[str], cwd: Path) -> float:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, check=False)
    return (time.perf_counter() - started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=10, help="runs of each case")
    repeat = parser.parse_args().repeat
    with tempfile.TemporaryDirectory(prefix="cli-bench-") as folder:
        for name, args in CASES.items():
            once(args, Path(folder))  # warm the file cache
            times = [once(args, Path(folder)) for _ in range(repeat)]
            print(
                f"{name:20} median {statistics.median(times):6.0f} ms"
                f"  ({min(times):.0f}-{max(times):.0f})"
            )


if __name__ == "__main__":
    main()
