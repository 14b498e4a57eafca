"""Telegram by long polling against the webhook: update → reply, one `persais serve`.

    .venv/bin/python bench/telegram_polling.py [--messages 100]

The fake Bot API knows no webhook, so the server polls it (PERSAIS_TELEGRAM_MODE unset);
its webhook route stays open too. Once the agents loaded, `/echo <token>` messages go one
at a time, alternately posted to the webhook and handed to the next getUpdates; the clock
stops when the fake receives the reply. Both paths share the process, the database and the
moment (ten chats in turn, so Telegram's pace of a message a second per chat
stays out of it), so the difference is the path's own: a getUpdates answer and one offset round trip
against an HTTP request.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.chat import (  # noqa: E402
    ADMIN,
    BOT_ID,
    USER,
    Replies,
    _ready,
    percentile,
    post,
    update,
    wait,
)
from tests.support.agents import write_agent  # noqa: E402
from tests.support.fake_telegram import FakeTelegram, fake_telegram  # noqa: E402
from tests.support.processes import free_port  # noqa: E402
from tests.support.webhooks import TELEGRAM_SECRET, TELEGRAM_TOKEN  # noqa: E402

# Ten people in turn: the channel paces messages to one chat a second apart (Telegram's
# limit), which would otherwise be all either path measures.
CHATS = [USER, *range(100, 109)]


def _loaded(client: httpx.Client) -> bool:
    return bool(client.get("/ready").json().get("agents", {}).get("loaded"))


def measure(client: httpx.Client, fake: FakeTelegram, messages: int) -> dict[str, object]:
    replies = Replies(fake)
    times: dict[str, list[float]] = {"webhook": [], "polling": []}
    for n in range(messages + 2):  # the first of each path warms it up, uncounted
        path = "webhook" if n % 2 == 0 else "polling"
        token = f"m{n}"
        body = update(2000 + n, CHATS[n % len(CHATS)], f"/echo {token}")
        start = time.monotonic()
        if path == "webhook":
            post(client, body)
        else:
            fake.push(body)
        wait(lambda t=token: (replies.collect(), f"Echo: {t}" in replies.at)[1], 60)  # type: ignore[misc]
        if n >= 2:
            times[path].append((replies.at[f"Echo: {token}"] - start) * 1000)
        time.sleep(0.05)
    report: dict[str, object] = {}
    for path, ms in times.items():
        report[path] = {
            "p50_ms": round(percentile(ms, 50), 1), "p90_ms": round(percentile(ms, 90), 1),
            "max_ms": round(max(ms), 1), "messages": len(ms),
        }  # fmt: skip
    report["p50_difference_ms"] = round(
        percentile(times["polling"], 50) - percentile(times["webhook"], 50), 1
    )
    return report


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=100, help="both paths together")
    opts = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="persais-polling-"))
    write_agent(work / "agents", "echo")
    with fake_telegram(BOT_ID) as (api, fake):
        env = {
            **os.environ, "PERSAIS_HOME": str(work / "home"),
            "PERSAIS_AGENTS_DIR": str(work / "agents"),
            "TELEGRAM_BOT_TOKEN": TELEGRAM_TOKEN, "TELEGRAM_WEBHOOK_SECRET": TELEGRAM_SECRET,
            "TELEGRAM_API_URL": api, "PERSAIS_TELEGRAM_ALLOWED_USERS": ",".join(map(str, CHATS)),
            "PERSAIS_TELEGRAM_ADMINS": str(ADMIN), "PERSAIS_LOG_LEVEL": "WARNING",
        }  # fmt: skip
        for name in ("DATABASE_URL", "PERSAIS_TELEGRAM_MODE"):
            env.pop(name, None)
        port = free_port()
        proc = subprocess.Popen(
            [str(ROOT / ".venv" / "bin" / "persais"), "serve", "--port", str(port)],
            env=env, cwd=work, stderr=subprocess.PIPE,
        )  # fmt: skip
        stderr: list[bytes] = []
        threading.Thread(target=lambda: stderr.extend(proc.stderr or []), daemon=True).start()
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
                wait(lambda: _ready(client), 120)
                wait(lambda: _loaded(client), 120)
                wait(lambda: fake.polls_in_flight == 1, 30)
                report = measure(client, fake, opts.messages)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
            if os.environ.get("BENCH_DEBUG"):
                sys.stderr.write(b"".join(stderr).decode(errors="replace"))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
