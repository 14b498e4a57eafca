"""Webhook ingest benchmark: `persais serve` against a bare Starlette endpoint, one run.

    .venv/bin/python bench/ingest.py [--seconds 30] [--rate 200] [--connections 16]

Measures, on the embedded default (web + worker in one process, as `persais serve` runs):
- time from start to `/ready` with the embedded database already initialised, and idle RSS;
- a sustained open-loop load of signed `pull_request` deliveries (answer latency p50/p99,
  every answered delivery then checked in the inbox and processed: zero lost);
- peak throughput with N keep-alive connections, for Persais and for the bare endpoint;
- the first delivery after `/ready` (issue 17): `persais serve` with Telegram and the GitHub
  App configured, `/ready` polled every 10 ms, a signed delivery sent the moment it is 200
  and its answer timed; then `/health` asked every 20 ms for 3 s, whose slowest answer is
  how long the event loop was kept from answering right after ready; then 5 deliveries
  more, what any delivery takes on this machine at the time (`--after-ready-only`
  runs just this; `--tree PATH` runs another checkout with this virtualenv, for a before).
Both servers are run the same way (uvicorn, no access log) on this machine in one run.
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
import time
import uuid
from pathlib import Path

import httpx
import psutil
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.db.embedded import start_embedded  # noqa: E402
from app.web.signature import github_signature  # noqa: E402
from bench.loadgen import Results, closed_loop, open_loop, request_bytes  # noqa: E402
from bench.procfs import cpu_pressure  # noqa: E402

SECRET = "bench-secret"
EXAMPLES = ROOT / "tests" / "fixtures" / "octokit-webhooks-examples" / "api.github.com.json"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        args, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def wait_ready(url: str, path: str = "/ready", timeout: float = 60) -> float:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        try:
            if httpx.get(url + path, timeout=1).status_code in (200, 405):
                return time.perf_counter() - t0
        except httpx.TransportError:
            pass
        time.sleep(0.01)
    raise TimeoutError(url)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


def after_ready(env: dict[str, str], tree: Path, body: bytes, runs: int) -> dict[str, object]:
    """Start `persais serve` `runs` times: the first delivery after /ready, and the loop's lag."""
    from tests.support.fake_github import app_key_pair
    from tests.support.webhooks import TELEGRAM_SECRET, TELEGRAM_TOKEN

    private, _ = app_key_pair()
    env = {**env, "TELEGRAM_BOT_TOKEN": TELEGRAM_TOKEN, "TELEGRAM_WEBHOOK_SECRET": TELEGRAM_SECRET,
           "PERSAIS_TELEGRAM_MODE": "webhook",  # as the webhook bench it is: no polling
           "TELEGRAM_API_URL": "http://127.0.0.1:9", "GITHUB_API_URL": "http://127.0.0.1:9",
           "GITHUB_APP_ID": "1", "GITHUB_PRIVATE_KEY": private}  # fmt: skip
    first, lag, to_ready, settled = [], [], [], []
    for n in range(runs):
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "app", "serve", "--port", str(port)],
            env=env, cwd=tree, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
                to_ready.append(wait_ready(f"http://127.0.0.1:{port}", timeout=120))
                headers = {"X-GitHub-Event": "ping", "X-GitHub-Delivery": f"after-ready-{n}",
                           "X-Hub-Signature-256": github_signature(SECRET.encode(), body),
                           "Content-Type": "application/json"}  # fmt: skip
                t0 = time.perf_counter()
                answer = client.post("/webhooks/github", content=body, headers=headers)
                first.append(time.perf_counter() - t0)
                assert answer.status_code == 202, answer.text
                slowest, until = 0.0, time.perf_counter() + 3
                while time.perf_counter() < until:
                    t0 = time.perf_counter()
                    client.get("/health")
                    slowest = max(slowest, time.perf_counter() - t0)
                    time.sleep(0.02)
                lag.append(slowest)
                for k in range(5):  # the same, settled: what this machine gives any delivery
                    headers["X-GitHub-Delivery"] = f"after-ready-{n}-{k}"
                    t0 = time.perf_counter()
                    client.post("/webhooks/github", content=body, headers=headers)
                    settled.append(time.perf_counter() - t0)
        finally:
            stop(proc)
            time.sleep(1)
    ms = [round(t * 1000, 1) for t in first]
    return {"start_to_ready_s": [round(t, 2) for t in to_ready], "first_delivery_ms": ms,
            "first_delivery_median_ms": statistics.median(ms),
            "settled_delivery_median_ms": round(statistics.median(settled) * 1000, 1),
            "slowest_health_in_3s_after_ready_ms": [round(t * 1000, 1) for t in lag]}  # fmt: skip


def maker(body: bytes, port: int, run: str):  # type: ignore[no-untyped-def]
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": "pull_request",
        "X-Hub-Signature-256": github_signature(SECRET.encode(), body),
    }
    prefix = request_bytes("/webhooks/github", headers, b"", f"127.0.0.1:{port}")
    head, _, _ = prefix.partition(b"\r\n\r\n")
    head = head.replace(b"Content-Length: 0", f"Content-Length: {len(body)}".encode())

    def make(n: int) -> bytes:
        return head + f"\r\nX-GitHub-Delivery: {run}-{n}\r\n\r\n".encode() + body

    return make


def summary(name: str, r: Results) -> dict[str, float | int | dict[int, int]]:
    return {
        "name": name,
        "answered": r.answered,
        "errors": r.errors,
        "statuses": r.statuses,
        "rate_per_s": round(r.rate(), 1),
        "p50_ms": round(r.percentile(50) * 1000, 2),
        "p99_ms": round(r.percentile(99) * 1000, 2),
        "max_ms": round(max(r.latencies, default=float("nan")) * 1000, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--peak-seconds", type=float, default=10)
    parser.add_argument("--after-ready-runs", type=int, default=5)
    parser.add_argument("--after-ready-only", action="store_true")
    parser.add_argument("--tree", type=Path, default=ROOT, help="the checkout to run")
    opts = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="persais-bench-"))
    env = {**os.environ, "PERSAIS_HOME": str(home), "GITHUB_WEBHOOK_SECRET": SECRET,
           "PERSAIS_LOG_LEVEL": "WARNING"}  # fmt: skip
    for name in ("DATABASE_URL", "TELEGRAM_BOT_TOKEN", "TELEGRAM_WEBHOOK_SECRET"):
        env.pop(name, None)
    persais = [str(ROOT / ".venv" / "bin" / "persais")]
    subprocess.run([*persais, "migrate"], env=env, check=True, capture_output=True)
    db = start_embedded(home)  # joins the shared embedded server, to check the inbox

    payload = json.loads(EXAMPLES.read_text())["pull_request"][0]
    body = json.dumps(payload).encode()
    report: dict[str, object] = {"body_bytes": len(body), "cores": os.cpu_count()}
    report["cpu_pressure_avg10"] = cpu_pressure()  # how noisy the machine was
    report["after_ready"] = after_ready(env, opts.tree, body, opts.after_ready_runs)
    if opts.after_ready_only:
        db.stop()
        print(json.dumps(report, indent=2))
        return

    # Start to /ready, and idle RSS (database already initialised).
    ready_times, rss = [], []
    for _ in range(3):
        port = free_port()
        proc = start([*persais, "serve", "--port", str(port)], env)
        ready_times.append(wait_ready(f"http://127.0.0.1:{port}"))
        time.sleep(3)
        rss.append(psutil.Process(proc.pid).memory_info().rss / 2**20)
        stop(proc)
        time.sleep(1)
    report["start_to_ready_s"] = [round(t, 2) for t in ready_times]
    report["idle_rss_mb"] = [round(m, 1) for m in rss]

    # Persais: sustained open loop, then peak closed loop.
    port = free_port()
    proc = start([*persais, "serve", "--port", str(port)], env)
    wait_ready(f"http://127.0.0.1:{port}")
    run = uuid.uuid4().hex[:8]
    make = maker(body, port, run)
    asyncio.run(open_loop("127.0.0.1", port, make, rate=100, seconds=2))  # warm-up
    sustained = asyncio.run(
        open_loop(
            "127.0.0.1", port, maker(body, port, run + "s"), rate=opts.rate, seconds=opts.seconds
        )
    )
    peak = asyncio.run(
        closed_loop("127.0.0.1", port, maker(body, port, run + "p"),
                    connections=opts.connections, seconds=opts.peak_seconds)
    )  # fmt: skip
    accepted = sustained.statuses.get(202, 0)
    with psycopg.connect(db.conninfo) as conn:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT count(*), count(*) FILTER (WHERE status IN ('processed', 'ignored'))"
                " FROM inbox WHERE delivery_id LIKE %s",
                (f"{run}s-%",),
            ).fetchone()
            assert row is not None
            if row[1] >= accepted:
                break
            time.sleep(0.5)
    stored, processed = row
    stop(proc)

    # The bare endpoint, the same loads.
    port = free_port()
    bare = start(
        [sys.executable, "-m", "uvicorn", "bench.bare_app:app", "--port", str(port),
         "--no-access-log", "--log-level", "warning"], env,
    )  # fmt: skip
    wait_ready(f"http://127.0.0.1:{port}", "/webhooks/github")
    asyncio.run(open_loop("127.0.0.1", port, maker(body, port, "w"), rate=100, seconds=2))
    bare_sustained = asyncio.run(
        open_loop("127.0.0.1", port, maker(body, port, "b"), rate=opts.rate, seconds=opts.seconds)
    )
    bare_peak = asyncio.run(
        closed_loop("127.0.0.1", port, maker(body, port, "bp"),
                    connections=opts.connections, seconds=opts.peak_seconds)
    )  # fmt: skip
    stop(bare)
    db.stop()

    report["persais_sustained"] = summary(
        f"persais {opts.rate:.0f}/s x {opts.seconds:.0f}s", sustained
    )
    report["persais_sustained"]["stored"] = stored  # type: ignore[index]
    report["persais_sustained"]["processed"] = processed  # type: ignore[index]
    report["persais_sustained"]["lost"] = accepted - processed  # type: ignore[index]
    report["bare_sustained"] = summary("bare", bare_sustained)
    report["persais_peak"] = summary(f"persais peak, {opts.connections} connections", peak)
    report["bare_peak"] = summary(f"bare peak, {opts.connections} connections", bare_peak)
    report["peak_ratio"] = round(peak.rate() / bare_peak.rate(), 3)
    report["start_to_ready_median_s"] = round(statistics.median(ready_times), 2)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
