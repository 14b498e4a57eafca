"""First answer after a (re)start: `/ready` → the first Telegram update → its reply.

    .venv/bin/python bench/first_reply.py [--runs 3]

Each run starts `persais serve` on one home (the first start does initdb; the later ones
are restarts of the same embedded Postgres), waits for `/ready`, posts one `/echo`, and
stops the clock when the fake Bot API receives the reply; then stops the server.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.chat import ADMIN, BOT_ID, USER, Replies, _ready, post, update, wait  # noqa: E402
from tests.support.agents import write_agent  # noqa: E402
from tests.support.fake_telegram import fake_telegram  # noqa: E402
from tests.support.processes import free_port  # noqa: E402
from tests.support.webhooks import TELEGRAM_SECRET, TELEGRAM_TOKEN  # noqa: E402


def first_reply(env: dict[str, str], work: Path, fake: object, run: int, settled: bool) -> float:
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
            if settled:  # the warm-up done: the agents loaded (issue 17 item 4 is apart)
                wait(lambda: _loaded(client), 120)
                time.sleep(1.0)
            replies = Replies(fake)  # type: ignore[arg-type]
            replies.collect()
            token = f"first{run}"
            start = time.monotonic()
            post(client, update(1000 + run, USER, f"/echo {token}"))
            wait(lambda: (replies.collect(), f"Echo: {token}" in replies.at)[1], 60)
            return replies.at[f"Echo: {token}"] - start
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        if os.environ.get("BENCH_DEBUG"):
            sys.stderr.write(b"".join(stderr).decode(errors="replace"))


def _loaded(client: httpx.Client) -> bool:
    return bool(client.get("/ready").json().get("agents", {}).get("loaded"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--settled", action="store_true", help="post once the agents loaded")
    opts = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="persais-first-reply-"))
    write_agent(work / "agents", "echo")
    with fake_telegram(BOT_ID) as (api, fake):
        env = {
            **os.environ, "PERSAIS_HOME": str(work / "home"),
            "PERSAIS_AGENTS_DIR": str(work / "agents"),
            "TELEGRAM_BOT_TOKEN": TELEGRAM_TOKEN, "TELEGRAM_WEBHOOK_SECRET": TELEGRAM_SECRET,
            "PERSAIS_TELEGRAM_MODE": "webhook",  # as the webhook bench it is: no polling
            "TELEGRAM_API_URL": api, "PERSAIS_TELEGRAM_ALLOWED_USERS": str(USER),
            "PERSAIS_TELEGRAM_ADMINS": str(ADMIN),
            "PERSAIS_LOG_LEVEL": os.environ.get("PERSAIS_LOG_LEVEL", "WARNING"),
        }  # fmt: skip
        env.pop("DATABASE_URL", None)
        times = [first_reply(env, work, fake, run, opts.settled) for run in range(opts.runs)]
    print(json.dumps({"first_start_s": round(times[0], 3),
                      "restarts_s": [round(t, 3) for t in times[1:]],
                      "median_restart_s": round(statistics.median(times[1:] or times), 3)},
                     indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
