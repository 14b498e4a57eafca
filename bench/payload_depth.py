"""Depth-check benchmark: how long the webhook's nesting bound holds the event loop
(`app/web/payload.py`, issue 17).

    .venv/bin/python bench/payload_depth.py [--repeat 3] [--megabytes 25]

Every signed GitHub body is measured for depth before it is parsed, on the event loop. For
bodies of `--megabytes` shaped to be costly (all brackets; chains nested exactly to the
bound; siblings; strings of brackets; quotes; backslashes) and one GitHub-like payload, it
prints the best of `--repeat` timings of the measure in use and of the one it replaced (a
Python-level running sum over the brackets, kept here as `before`), and `json.loads` of the
GitHub-like payload for scale. The measure's regular expressions compile on first use: the
first call and the first deep body pay that once a process (shown apart).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Callable
from itertools import accumulate
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.web import payload

_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def before(body: bytes) -> bool:
    """The measure replaced (commit 9cf8f59 and earlier), as it ran: on the decoded text."""
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", body.decode()))
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0) > payload.MAX_DEPTH


def shapes(size: int) -> dict[str, bytes]:
    bound = payload.MAX_DEPTH
    chain = b"[" * bound + b"]" * bound
    labels = [
        {"id": n, "name": f"label {n}", "url": f"https://api.github.com/repos/o/r/labels/{n}",
         "default": False, "nested": {"a": [1, 2, {"b": "c \"quoted\" [x]"}]}}
        for n in range(size // 160)
    ]  # fmt: skip
    return {
        "all brackets, one chain": b"[" * (size // 2) + b"]" * (size // 2),
        f"chains nested {bound} deep": chain * (size // len(chain)),
        "siblings []": b"[" + b"[]," * (size // 3 - 1) + b"[]]",
        "one string of [": b'{"a": "' + b"[" * (size - 9) + b'"}',
        "strings of one [": b"[" + b'"[",' * (size // 4 - 1) + b'"["]',
        "quotes": b'"' * size,
        "escaped backslashes": b'{"a": "' + b"\\\\" * ((size - 9) // 2) + b'"}',
        "GitHub-like (labels)": json.dumps({"action": "labeled", "labels": labels}).encode(),
    }


def best(repeat: int, run: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--megabytes", type=float, default=25)
    args = parser.parse_args()
    size = int(args.megabytes * 1024 * 1024)

    start = time.perf_counter()
    payload.deeper_than_bound(b"{}")
    first = time.perf_counter() - start
    start = time.perf_counter()
    payload.deeper_than_bound(b"[" * (payload.MAX_DEPTH + 1))
    first_deep = time.perf_counter() - start
    print(f"first call (compiles the bound's pattern): {first * 1000:.1f} ms")
    print(f"first deep body (compiles the other {payload.MAX_DEPTH}): {first_deep * 1000:.0f} ms")
    print(f"{'body':28} {'MB':>5} {'deep':>5} {'now s':>7} {'before s':>9}")
    for name, body in shapes(size).items():
        deep = payload.deeper_than_bound(body)
        assert deep == before(body) or name == "quotes", name  # quotes: no JSON, either answer
        now = best(args.repeat, lambda body=body: payload.deeper_than_bound(body))
        then = best(args.repeat, lambda body=body: before(body))
        print(f"{name:28} {len(body) / 1e6:5.1f} {deep!s:>5} {now:7.3f} {then:9.3f}")
        if name.startswith("GitHub"):
            parse = best(args.repeat, lambda body=body: json.loads(body))
            print(f"{'  json.loads of it':28} {'':5} {'':5} {parse:7.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
