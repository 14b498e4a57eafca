"""Forge drift benchmark: what `/status`'s drift line and `persais forge status` cost
(`app/forge/drift.py`: a fetch of the checkout's HEAD into the forge, then a count).

    .venv/bin/python bench/forge_drift.py [--repeat 20] [--behind 5] [--ahead 0]

A bare forge is cloned from this checkout (`--ahead` commits back, so the checkout is that
many commits ahead), `--behind` merge-like commits are written on its main, and the drift
is measured `--repeat` times; the first measurement (whose fetch brings the checkout's
commits over) and the median of the rest are printed, in milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.forge.drift import measure  # noqa: E402

AUTHOR = ["-c", "user.name=bench", "-c", "user.email=bench@example.com"]


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), *AUTHOR, *args], check=True,
                          capture_output=True, text=True)  # fmt: skip
    return done.stdout.strip()


def forge(at: Path, ahead: int, behind: int) -> Path:
    bare = at / "persais.git"
    # Only what the forge would hold: the history up to `ahead` commits back.
    base = git(ROOT, "rev-parse", f"HEAD~{ahead}")
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    git(bare, "fetch", "-q", "--no-tags", str(ROOT), f"{base}:refs/heads/main")
    tree = git(bare, "rev-parse", "main^{tree}")
    tip = base
    for n in range(behind):
        tip = git(bare, "commit-tree", tree, "-p", tip, "-m", f"merged #{n}")
    git(bare, "update-ref", "refs/heads/main", tip)
    return bare


async def timings(bare: Path, repeat: int) -> tuple[list[float], str]:
    spent, line = [], ""
    for _ in range(repeat):
        t = time.perf_counter()
        drift = await measure(ROOT, bare)
        spent.append((time.perf_counter() - t) * 1000)
        line = drift.describe()
    return spent, line


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--behind", type=int, default=5)
    parser.add_argument("--ahead", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="forge-drift-") as scratch:
        bare = forge(Path(scratch), args.ahead, args.behind)
        spent, line = asyncio.run(timings(bare, args.repeat))
    print(f"checkout: {ROOT} ({git(ROOT, 'rev-list', '--count', 'HEAD')} commits)")
    print(f"drift: {line}")
    print(f"first: {spent[0]:.1f} ms; then median {statistics.median(spent[1:]):.1f} ms, "
          f"max {max(spent[1:]):.1f} ms over {len(spent) - 1}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
