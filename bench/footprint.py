"""Start-up memory (issue 17, defect 5): where the megabytes go, and each process's idle size.

    .venv/bin/python bench/footprint.py [--idle-seconds 5] [--arena]

1. A census: a fresh interpreter imports, one after another, what a `persais serve`
   worker imports (the libraries, then Persais's own heavy modules), and reports after each
   the growth of its RSS and PSS (/proc smaps_rollup) and the seconds it took.
2. The three process kinds Fly runs or could run, as real processes on one embedded
   Postgres, Telegram and the GitHub App configured (their APIs pointed at a closed port:
   nothing is sent while idle): `persais serve --no-worker` (Fly's web group), `persais
   serve`, `persais worker --ready-port`. Each is measured `--idle-seconds` after `/ready`
   turned 200 (the warm-up done); the embedded Postgres is apart and not counted.
   `--arena` runs each a second time with MALLOC_ARENA_MAX=2.
`--tree PATH` measures another checkout with this virtualenv (for a before).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.procfs import cpu_pressure, memory_kb  # noqa: E402
from tests.support.fake_github import app_key_pair  # noqa: E402
from tests.support.processes import free_port  # noqa: E402
from tests.support.webhooks import TELEGRAM_SECRET, TELEGRAM_TOKEN  # noqa: E402

# In the order a `persais serve` with its worker meets them.
CENSUS = [
    "pydantic", "pydantic_settings", "psycopg", "psycopg_pool", "procrastinate", "starlette",
    "uvicorn", "prometheus_client", "httpx", "app.settings", "app.web.server", "app.cli",
    "langchain_core.runnables", "langgraph.graph", "langgraph.checkpoint.postgres.aio",
    "app.conversations", "aiogram", "app.telegram.channel", "<lean_types.build()>",
    "githubkit", "app.github.service",
]  # fmt: skip

CENSUS_SCRIPT = """
import importlib, json, os, sys, time
sys.path.insert(0, %r)
from bench.procfs import memory_kb
rows, before = [], memory_kb(os.getpid())
for name in %r:
    t0 = time.perf_counter()
    if name == "<lean_types.build()>":
        try:
            from app.telegram import lean_types
        except ImportError:  # a checkout from before it
            continue
        lean_types.build()
    else:
        importlib.import_module(name)
    after = memory_kb(os.getpid())
    rows.append([name, (after["rss"] - before["rss"]) / 1024, (after["pss"] - before["pss"]) / 1024,
                 time.perf_counter() - t0, after["rss"] / 1024])
    before = after
print(json.dumps(rows))
"""


def census(tree: Path) -> list[dict[str, object]]:
    out = subprocess.run(
        [sys.executable, "-c", CENSUS_SCRIPT % (str(tree), CENSUS)],
        cwd=tree, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return [
        {"import": name, "rss_mb": round(rss, 1), "pss_mb": round(pss, 1),
         "seconds": round(seconds, 2), "rss_total_mb": round(total, 1)}
        for name, rss, pss, seconds, total in json.loads(out.stdout)
    ]  # fmt: skip


def idle(args: list[str], env: dict[str, str], seconds: float, tree: Path) -> dict[str, object]:
    port = free_port()
    argv = [sys.executable, "-m", "app", *args, *(["--port", str(port)] if args[0] == "serve"
            else ["--ready-port", str(port)])]  # fmt: skip
    proc = subprocess.Popen(argv, env=env, cwd=tree, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        t0 = time.monotonic()
        while True:
            assert proc.poll() is None, f"{args} exited with {proc.returncode}"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=30).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() - t0 < 180, f"{args} not ready"
            time.sleep(0.05)
        ready_s = time.monotonic() - t0
        at_ready = memory_kb(proc.pid)
        time.sleep(seconds)
        settled = memory_kb(proc.pid)
        return {"process": "persais " + " ".join(args), "ready_s": round(ready_s, 2),
                "rss_at_ready_mb": round(int(at_ready["rss"]) / 1024, 1),
                "rss_idle_mb": round(int(settled["rss"]) / 1024, 1),
                "pss_idle_mb": round(int(settled["pss"]) / 1024, 1)}  # fmt: skip
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--idle-seconds", type=float, default=5)
    parser.add_argument("--arena", action="store_true", help="also with MALLOC_ARENA_MAX=2")
    parser.add_argument("--tree", type=Path, default=ROOT, help="the checkout to measure")
    opts = parser.parse_args()
    report: dict[str, object] = {"cpu_pressure_avg10": cpu_pressure(), "census": census(opts.tree)}

    private, _ = app_key_pair()
    home = Path(tempfile.mkdtemp(prefix="persais-footprint-"))
    env = {**os.environ, "PERSAIS_HOME": str(home), "PERSAIS_LOG_LEVEL": "WARNING",
           "GITHUB_WEBHOOK_SECRET": "footprint", "GITHUB_APP_ID": "1",
           "GITHUB_PRIVATE_KEY": private, "GITHUB_API_URL": "http://127.0.0.1:9",
           "TELEGRAM_BOT_TOKEN": TELEGRAM_TOKEN, "TELEGRAM_WEBHOOK_SECRET": TELEGRAM_SECRET,
           "PERSAIS_TELEGRAM_MODE": "webhook",  # as the webhook bench it is: no polling
           "TELEGRAM_API_URL": "http://127.0.0.1:9"}  # fmt: skip
    env.pop("DATABASE_URL", None)
    subprocess.run([sys.executable, "-m", "app", "migrate"], env=env, cwd=ROOT, check=True,
                   capture_output=True)  # fmt: skip
    kinds = (["serve", "--no-worker"], ["serve"], ["worker"])
    runs = [idle(kind, env, opts.idle_seconds, opts.tree) for kind in kinds]
    if opts.arena:
        arena = {**env, "MALLOC_ARENA_MAX": "2"}
        runs += [{**idle(kind, arena, opts.idle_seconds, opts.tree), "MALLOC_ARENA_MAX": 2}
                 for kind in kinds]  # fmt: skip
    report["idle"] = runs
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
