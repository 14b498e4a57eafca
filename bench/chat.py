"""Chat benchmark: Telegram update → reply, registry load time, reload under traffic.

    .venv/bin/python bench/chat.py [--messages 300] [--agents 100] [--seconds 10]

1. Latency: raw `Update`s posted one at a time (10 a second) to `persais serve`'s webhook;
   the clock stops when the local fake Bot API receives the bot's `sendMessage`. The path:
   webhook → inbox → queue → worker → aiogram → LangGraph (Postgres checkpoint) → agent →
   Bot API. The agent is a trivial echo.
2. Registry: load time for N generated agents (median of 3 loads, in process).
3. Reload under traffic: N agents, 50 messages a second for S seconds to rotating agents,
   while an admin sends `/reload` every second; every message must get its answer.
"""

from __future__ import annotations

import argparse
import asyncio
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
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.agents.builtin import builtin_agents  # noqa: E402
from app.agents.registry import Registry  # noqa: E402
from tests.support.agents import write_agent  # noqa: E402
from tests.support.fake_telegram import FakeTelegram, fake_telegram  # noqa: E402
from tests.support.hosts import launcher  # noqa: E402
from tests.support.processes import free_port  # noqa: E402
from tests.support.webhooks import TELEGRAM_SECRET, TELEGRAM_TOKEN  # noqa: E402

BOT_ID = int(TELEGRAM_TOKEN.split(":")[0])
USER, ADMIN = 42, 7


def update(n: int, uid: int, text: str) -> dict[str, Any]:
    return {
        "update_id": n,
        "message": {
            "message_id": n, "date": int(time.time()), "text": text,
            "from": {"id": uid, "is_bot": False, "first_name": "Bench"},
            "chat": {"id": uid, "type": "private"},
        },
    }  # fmt: skip


class Replies:
    """Arrival times of the bot's messages at the fake API, by text."""

    def __init__(self, fake: FakeTelegram) -> None:
        self.fake = fake
        self.seen = 0
        self.at: dict[str, float] = {}

    def collect(self) -> None:
        calls = list(self.fake.calls)  # one snapshot: the fake's thread keeps appending
        for call in calls[self.seen :]:
            if call.method == "sendMessage":
                self.at.setdefault(call.params["text"], call.at)
        self.seen = len(calls)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def post(client: httpx.Client, body: dict[str, Any]) -> None:
    response = client.post(
        "/webhooks/telegram",
        content=json.dumps(body),
        headers={
            "Content-Type": "application/json",
            "X-Telegram-Bot-Api-Secret-Token": TELEGRAM_SECRET,
        },
    )
    response.raise_for_status()


def latency(client: httpx.Client, fake: FakeTelegram, messages: int) -> dict[str, float]:
    replies = Replies(fake)
    post(client, update(1, USER, "/echo warm-up"))  # first use loads aiogram's handlers
    wait(lambda: (replies.collect(), "Echo: warm-up" in replies.at)[1], 60)
    sent: dict[str, float] = {}
    for n in range(messages):
        token = f"m{n}"
        sent[f"Echo: {token}"] = time.monotonic()
        post(client, update(10 + n, USER, f"/echo {token}"))
        time.sleep(0.1)
    wait(lambda: (replies.collect(), all(t in replies.at for t in sent))[1], 60)
    ms = [(replies.at[text] - start) * 1000 for text, start in sent.items()]
    if os.environ.get("BENCH_DEBUG"):
        print([round(m) for m in ms], file=sys.stderr)
    return {"p50_ms": round(percentile(ms, 50), 1), "p99_ms": round(percentile(ms, 99), 1),
            "max_ms": round(max(ms), 1), "messages": len(ms)}  # fmt: skip


def registry_load(agents: Path, count: int) -> dict[str, float]:
    async def load() -> float:
        registry = Registry(agents, builtin_agents(), _context, launcher())
        start = time.perf_counter()
        loaded = await registry.reload()
        took = time.perf_counter() - start
        assert len(loaded.agents) == count + len(builtin_agents()), loaded.quarantined
        await registry.close()
        return took

    times = [asyncio.run(load()) for _ in range(3)]
    return {"agents": count, "median_s": round(statistics.median(times), 3),
            "runs_s": [round(t, 3) for t in times]}  # type: ignore[dict-item]  # fmt: skip


def _context(name: str, permissions: frozenset[str]) -> Any:
    import logging

    from app.agents.base import AgentContext

    return AgentContext(name, permissions, logging.getLogger(name), {})


def reload_under_load(
    client: httpx.Client, fake: FakeTelegram, agents: int, seconds: float
) -> dict[str, Any]:
    replies = Replies(fake)
    expected: list[str] = []
    reloads = 0
    n0 = 100_000
    start = time.monotonic()
    n = 0
    while time.monotonic() - start < seconds:
        due = start + n / 50
        if (delay := due - time.monotonic()) > 0:
            time.sleep(delay)
        token = f"r{n}"
        expected.append(f"Echo: {token}")
        post(client, update(n0 + 2 * n, USER, f"/a{n % (agents - 1):03d} {token}"))
        if n % 50 == 25:
            post(client, update(n0 + 2 * n + 1, ADMIN, "/reload"))
            reloads += 1
        n += 1
    wait(lambda: (replies.collect(), all(t in replies.at for t in expected))[1], 120, strict=False)
    replies.collect()
    lost = [t for t in expected if t not in replies.at]
    wanted = set(expected)
    other = sorted(
        {
            t[:80]
            for t in replies.at
            if t not in wanted and not t.startswith(("Reloaded", "Echo: m", "Echo: w"))
        }
    )
    return {"messages": len(expected), "reloads": reloads, "answered": len(expected) - len(lost),
            "lost": len(lost), "unexpected_replies": other[:5]}  # fmt: skip


def wait(condition: Any, timeout: float, strict: bool = True) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            if strict:
                raise TimeoutError("the bot did not answer in time")
            return
        time.sleep(0.01)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--agents", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=10)
    opts = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="persais-chat-bench-"))
    agents = work / "agents"
    write_agent(agents, "echo")
    for i in range(opts.agents - 1):
        write_agent(agents, f"a{i:03d}", command=f"a{i:03d}")
    report: dict[str, Any] = {"registry_load": registry_load(agents, opts.agents)}

    with fake_telegram(BOT_ID) as (api, fake):
        env = {
            **os.environ, "PERSAIS_HOME": str(work / "home"), "PERSAIS_AGENTS_DIR": str(agents),
            "TELEGRAM_BOT_TOKEN": TELEGRAM_TOKEN, "TELEGRAM_WEBHOOK_SECRET": TELEGRAM_SECRET,
            "PERSAIS_TELEGRAM_MODE": "webhook",  # as the webhook bench it is: no polling
            "TELEGRAM_API_URL": api, "PERSAIS_TELEGRAM_ALLOWED_USERS": str(USER),
            "PERSAIS_TELEGRAM_ADMINS": str(ADMIN), "PERSAIS_LOG_LEVEL": "WARNING",
            "PERSAIS_WORKER_CONCURRENCY": "8",
        }  # fmt: skip
        env.pop("DATABASE_URL", None)
        port = free_port()
        proc = subprocess.Popen(
            [str(ROOT / ".venv" / "bin" / "persais"), "serve", "--port", str(port)],
            env=env, cwd=work, stderr=subprocess.PIPE,
        )  # fmt: skip
        stderr: list[bytes] = []
        threading.Thread(target=lambda: stderr.extend(proc.stderr or []), daemon=True).start()
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
                wait(lambda: _ready(client), 60)
                report["update_to_reply"] = latency(client, fake, opts.messages)
                report["reload_under_50_per_s"] = reload_under_load(
                    client, fake, opts.agents, opts.seconds
                )
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
    print(json.dumps(report, indent=2))


def _ready(client: httpx.Client) -> bool:
    try:
        return client.get("/ready").status_code == 200
    except httpx.TransportError:
        return False


if __name__ == "__main__":
    main()
