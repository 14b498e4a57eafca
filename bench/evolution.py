"""The first evolution, timed: how long each part of the story takes for a person in Telegram.

    .venv/bin/python bench/evolution.py [--runs 2]

The story of `tests/e2e/test_first_evolution.py` (without the kill): `persais serve` as a
real process on the embedded Postgres, GitHub / Telegram / Fly / the model as the local
fakes (`tests/support/stack.py`), the real aider-chat against the scripted model; the home
repository on the fake GitHub, the serve process one of two Fly machines. Measured from the
moment each update is posted to /webhooks/telegram until the fake Telegram receives what
answers it: the request → the first progress message, → the pull request's buttons; the
pull request opened → its review's check run green (GitHub's webhook → Persais's review);
[Deploy] → "is live" (merge, release, the other machine moved, the serve process's own
machine updated, the process replaced, the replacement finishing the deploy);
`/echo Hello World` → `Echo: Hello World` on the new process.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.e2e.test_first_evolution import (  # noqa: E402
    ECHO_REQUEST,
    ECHO_SCRIPT,
    deploy_offer,
    green,
)
from tests.support.fake_telegram import ADA, press_update, text_update  # noqa: E402
from tests.support.stack import Stack, pick, stack  # noqa: E402


def until(condition: Callable[[], Any], timeout: float = 300) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise TimeoutError(str(condition))


def first_at(s: Stack, fragment: str) -> float | None:
    """When the fake Telegram first received a message containing `fragment`."""
    sent = (c for c in s.telegram.calls if c.method == "sendMessage")
    return next((c.at for c in sent if fragment in str(c.params.get("text", ""))), None)


def one_run() -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-evolution-") as scratch:
        started = time.monotonic()
        with stack(Path(scratch), ECHO_SCRIPT) as s:
            ready = time.monotonic()
            t0 = time.monotonic()
            s.tell(text_update(ADA, f"/mechanic {ECHO_REQUEST}"))
            progress = until(lambda: first_at(s, "🔧 Mechanic job"))
            pr = until(lambda: first_at(s, "✅ Pull request"))
            _, offer = deploy_offer(s)  # on the job's result or the admin notice
            pull = next(p for p in s.github.pulls.values() if p.head.startswith("mechanic/"))
            until(lambda: green(s, pull.head_sha))
            reviewed = time.monotonic()
            t1 = time.monotonic()
            s.tell(press_update(ADA, pick(offer, "Deploy")))
            live = until(lambda: first_at(s, "is live"))
            assert s.fly is not None
            restarted = until(lambda: s.fly.boots and s.fly.boots[-1][1].get("PERSAIS_RELEASE"))
            t2 = time.monotonic()
            s.tell(text_update(ADA, "/echo Hello World"))
            answered = until(lambda: first_at(s, "Echo: Hello World"))
            assert restarted
        return {
            "start: persais serve ready (embedded Postgres, first start)": ready - started,
            "request → first progress message": progress - t0,
            "request → pull request with [Deploy] [Abort] [View PR]": pr - t0,
            "pull request → its review's check run green": reviewed - pr,
            "[Deploy] → “is live” (incl. the replacement's restart)": live - t1,
            "/echo Hello World → Echo: Hello World": answered - t2,
        }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=2)
    runs = [one_run() for _ in range(parser.parse_args().runs)]
    print("| measure | median | runs |\n| --- | --- | --- |")
    for key in runs[0]:
        values = [r[key] for r in runs]
        shown = ", ".join(f"{v:.2f}" for v in values)
        print(f"| {key} | {statistics.median(values):.2f} s | {shown} |")


if __name__ == "__main__":
    main()
