"""Deploy benchmark: [Deploy] pressed → the new agent answering, under chat traffic, on the
local deployer; and the same deploy rolled out to three machines of a fake Fly app.

    .venv/bin/python bench/deploy.py [--runs 3]

Local: a Persais process (worker on the Mechanic queue, Conversations) and a Mechanic-like
pull request adding the echo agent. A load generator sends `/echo n` at 20 messages a
second through `Orchestrator.handle` (each its own task, over 20 conversations) from ~1 s
before the press to ~1 s after the first `Echo:` answer. Measured: press → the first message
sent after it answered `Echo: n` (target < 2 s); load messages sent / answered / lost /
errors (targets 0 / 0) and their latency; time per deploy step (wrappers, the ledger).

Fly: the same deploy with FLY_* set, against `tests/support/fake_fly.py` (3 machines, Fly's
1 request/s per action per machine, 0.3 s boots; a booting machine really materialises
`dynamic/` at its PERSAIS_RELEASE and loads it, and /ready says what loaded). Measured:
press → "is live", Machines API requests per action, 429s (target 0), every machine's env
on the merge sha. Each run: fresh databases and PERSAIS_HOMEs. Missed targets are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.agents.registry import Registry  # noqa: E402
from app.deploy import files, verify  # noqa: E402
from app.deploy.fly import FlyDeployer  # noqa: E402
from app.forge.local import LocalForge  # noqa: E402
from app.orchestrator.orchestrator import Inbound  # noqa: E402
from bench.stopwatch import Stopwatch  # noqa: E402
from tests.support.config import make_settings  # noqa: E402
from tests.support.deploys import (  # noqa: E402
    ECHO,
    machine_boot,
    mechanic_pull,
    offer_deploy,
    outcome,
    persais,
)
from tests.support.fake_fly import FLY_TOKEN, fake_fly  # noqa: E402
from tests.support.postgres import TestPostgres  # noqa: E402

RATE = 20  # load messages a second
USERS = 20  # conversations the load is spread over (one message a second each)
LEAD_S = 1.0  # load before the press, and after the first Echo answer
TARGET_ANSWERING_S = 2.0
ACTIONS = ("list", "lease", "update", "wait", "release", "get")


def deploy_steps(fly: bool = False) -> Stopwatch:
    watch = Stopwatch()
    watch.wrap(LocalForge, "pull_state", "forge: pull state")
    watch.wrap(LocalForge, "checks", "forge: checks")
    watch.wrap(LocalForge, "merge", "forge: squash merge")
    watch.wrap(LocalForge, "changed_paths", "forge: changed paths")
    watch.wrap(files, "materialise", "materialise dynamic/ (this process)")
    watch.wrap(Registry, "stage", "registry: stage (load)")
    watch.wrap(verify, "problems", "verify (smoke)")
    watch.wrap(Registry, "promote", "registry: promote")
    if fly:
        watch.wrap(FlyDeployer, "roll", "fly: roll (3 machines)")
        watch.wrap(FlyDeployer, "_ready", "fly: /ready checks")
    return watch


async def timeline(convo: Any, pressed: float) -> dict[str, float]:
    """Seconds after the press of what the database recorded (audit, queue, ledger)."""
    query = """
        SELECT 'audit ' || action, min(at) FROM audit_log
         WHERE action LIKE 'deploy.%%' OR action LIKE 'release.%%' GROUP BY action
        UNION ALL
        SELECT 'queue ' || e.type, min(e.at) FROM procrastinate_events e
          JOIN procrastinate_jobs j ON j.id = e.job_id
         WHERE j.task_name LIKE '%%deploy%%' GROUP BY e.type
        UNION ALL
        SELECT 'release ' || status, min(at) FROM release_events WHERE release > 1 GROUP BY status
    """
    async with convo.pool.connection() as conn:
        rows = await (await conn.execute(query)).fetchall()
    return {name: at.timestamp() - pressed for name, at in rows}


class Load:
    """`/echo n` at RATE a second, each message its own task; what came back."""

    def __init__(self, convo: Any) -> None:
        self.convo = convo
        self.sent: list[dict[str, Any]] = []
        self.pressed: float | None = None
        self.answering: float | None = None  # first Echo to a message sent after the press
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        start, n = time.time(), 0
        while self.answering is None or time.time() < self.answering + LEAD_S:
            if time.time() - start > 120:
                break  # the agent never answered: stop anyway
            await asyncio.sleep(max(0.0, start + n / RATE - time.time()))
            task = asyncio.create_task(self.one(n))
            self._tasks.add(task)
            n += 1
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=30)

    async def one(self, n: int) -> None:
        user = f"cli:load{n % USERS}"
        row: dict[str, Any] = {"n": n, "at": time.time(), "replies": None, "error": None}
        self.sent.append(row)
        inbound = Inbound(conversation=user, channel="terminal", user=user,
                          user_name=user[4:], text=f"/echo {n}")  # fmt: skip
        try:
            replies = await self.convo.orchestrator.handle(inbound)
        except Exception as exc:  # counted, not raised
            row["error"] = repr(exc)[:200]
            return
        row["done"] = time.time()
        row["replies"] = replies
        texts = [r.text for r in replies]
        if any(r.error or r.text.startswith("⚠") for r in replies):
            row["error"] = texts
        elif texts == [f"Echo: {n}"]:
            row["echo"] = True
            after = self.pressed is not None and row["at"] >= self.pressed
            if after and (self.answering is None or row["done"] < self.answering):
                self.answering = row["done"]
        elif not (texts and texts[0].startswith("Unknown command /echo")):
            row["error"] = texts  # neither answer: counted as an error

    def summary(self) -> dict[str, Any]:
        answered = [r for r in self.sent if r["replies"]]  # one non-empty list of replies
        latencies = sorted(r["done"] - r["at"] for r in answered)
        first_echo = min((r["n"] for r in self.sent if r.get("echo")), default=None)
        unknown_after = sum(
            1 for r in answered
            if first_echo is not None and r["n"] > first_echo and not r.get("echo")
        )  # fmt: skip
        return {
            "sent": len(self.sent), "answered": len(answered),
            "lost": len(self.sent) - len(answered),
            "errors": sum(r["error"] is not None for r in self.sent),
            "echo": sum(bool(r.get("echo")) for r in self.sent),
            "unknown_after_echo": unknown_after,
            "p50_ms": 1000 * statistics.median(latencies) if latencies else float("nan"),
            "max_ms": 1000 * latencies[-1] if latencies else float("nan"),
            "error_samples": [r["error"] for r in self.sent if r["error"]][:3],
        }  # fmt: skip


async def local_deploy(settings: Any, database: str) -> dict[str, Any]:
    async with persais(settings, database) as convo:
        job, _, _ = await mechanic_pull(convo, settings, ECHO)
        question = await offer_deploy(convo, job)
        load = Load(convo)
        await load.one(-1)  # warm the conversation graph once
        load.sent.clear()
        running = asyncio.create_task(load.run())
        await asyncio.sleep(LEAD_S)
        watch = deploy_steps()
        try:
            load.pressed = time.time()
            press = await convo.orchestrator.press(question, "deploy", user="cli:ada", admin=False)
            result = await outcome(convo, within=120)
            live = time.time()
            await running
        finally:
            watch.restore()
        times = await timeline(convo, load.pressed)
    if not (press.ok and "is live" in result):
        raise RuntimeError(f"the deploy did not go live: {press} {result}")
    answering = (load.answering or float("nan")) - load.pressed
    return {"answering_s": answering, "result_s": live - load.pressed, **load.summary(),
            "steps": dict(watch.seconds), "timeline": times}  # fmt: skip


def timed_boots(bare: Path, homes: Path) -> tuple[Callable[..., Any], list[float]]:
    """A Fly machine booting (`machine_boot`: `dynamic/` at PERSAIS_RELEASE materialised on a
    disk of its own and loaded; /ready says what loaded), and how long each release boot took."""
    boot, seconds = machine_boot(bare, homes, ROOT / "dynamic" / "agents"), []

    def timed(machine: str, env: dict[str, str]) -> dict[str, Any]:
        t = time.perf_counter()
        try:
            return boot(machine, env)
        finally:
            if env.get("PERSAIS_RELEASE"):
                seconds.append(time.perf_counter() - t)

    return timed, seconds


def fly_deploy(home: Path, database: str) -> dict[str, Any]:
    boot, boots = timed_boots(home / "forge" / "persais.git", home.parent / f"{home.name}-fly")
    with fake_fly(machines=3, boot=boot, boot_seconds=0.3) as (url, fake):
        assert fake.min_interval == 1.0  # Fly's real limit
        settings = make_settings(
            home, database, FLY_API_TOKEN=FLY_TOKEN, FLY_APP_NAME="persais", FLY_API_URL=url,
            PERSAIS_FLY_READY_PORT=fake.ready_port, PERSAIS_LOG_LEVEL="WARNING",
        )  # fmt: skip

        async def run() -> dict[str, Any]:
            async with persais(settings, database) as convo:
                job, _, _ = await mechanic_pull(convo, settings, ECHO)
                question = await offer_deploy(convo, job)
                before = len(fake.requests)
                watch = deploy_steps(fly=True)
                try:
                    t = time.time()
                    await convo.orchestrator.press(question, "deploy", user="cli:ada", admin=False)
                    result = await outcome(convo, within=180)
                    wall = time.time() - t
                finally:
                    watch.restore()
                async with convo.pool.connection() as conn:
                    cur = await conn.execute("SELECT sha FROM releases WHERE source = 'merge'")
                    sha = str((await cur.fetchone() or [""])[0])
                made = fake.requests[before:]
                per = Counter(r.action for r in made)
                return {
                    "wall_s": wall, "live": "is live" in result, "result": result,
                    "requests": len(made), **{a: per.get(a, 0) for a in ACTIONS},
                    "429s": len(fake.rate_limited),
                    "envs_ok": all(fake.env(m).get("PERSAIS_RELEASE") == sha
                                   for m in fake.machines),
                    "boot_load_s": statistics.median(boots or [float("nan")]),
                    "steps": dict(watch.seconds), "timeline": await timeline(convo, t),
                }  # fmt: skip

        return asyncio.run(run())


def table(title: str, runs: list[dict[str, Any]], keys: list[str]) -> dict[str, float]:
    print(title)
    rows = [[str(i + 1), *(_cell(r[k]) for k in keys)] for i, r in enumerate(runs)]
    medians = {k: statistics.median(float(r[k]) for r in runs) for k in keys}
    rows.append(["median", *(_cell(all(r[k] for r in runs)) if isinstance(runs[0][k], bool)
                             else _cell(medians[k]) for k in keys)])  # fmt: skip
    head = ["run", *keys]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(head)]
    for row in [head, *rows]:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))
    return medians


def breakdown(title: str, runs: list[dict[str, Any]], field: str) -> None:
    print(title)
    labels = sorted({k for r in runs for k in r[field]}, key=lambda k: runs[0][field].get(k, 0))
    for label in labels:
        values = [r[field].get(label, float("nan")) for r in runs]
        shown = ", ".join(f"{v:.3f}" for v in values)
        print(f"  {statistics.median(values):7.3f}  {label}   (runs: {shown})")


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "NO"
    return f"{value:.3f}" if isinstance(value, float) and not value.is_integer() else f"{value:g}"


def mark(ok: bool) -> str:
    return "✅" if ok else "❌"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    opts = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="persais-deploy-bench-"))
    pg = TestPostgres(work / "pg")
    local: list[dict[str, Any]] = []
    fly: list[dict[str, Any]] = []
    try:
        for n in range(opts.runs):
            home, database = work / f"local-{n}", pg.fresh_database()
            settings = make_settings(home, database, PERSAIS_LOG_LEVEL="WARNING")
            local.append(asyncio.run(local_deploy(settings, database)))
            fly.append(fly_deploy(work / f"fly-{n}", pg.fresh_database()))
    finally:
        pg.stop()

    keys = ["answering_s", "result_s", "sent", "answered", "lost", "errors", "echo",
            "unknown_after_echo", "p50_ms", "max_ms"]  # fmt: skip
    m = table(f"local deployer, load {RATE}/s over {USERS} conversations:", local, keys)
    for r in local:
        if r["error_samples"]:
            print("  errors, e.g.:", r["error_samples"])
    breakdown("time inside the steps (s), from wrappers:", local, "steps")
    breakdown("database timeline (s after the press):", local, "timeline")
    print()
    fkeys = ["wall_s", "live", "requests", *ACTIONS, "429s", "envs_ok", "boot_load_s"]
    f = table("Fly deployer, fake Machines API, 3 machines, 1 request/s/action/machine:", fly,
              fkeys)  # fmt: skip
    for r in fly:
        if not r["live"]:
            print("  result:", r["result"])
    breakdown("time inside the steps (s), from wrappers:", fly, "steps")
    breakdown("database timeline (s after the press):", fly, "timeline")
    print()
    print("targets (issue 6):")
    print(f"  {mark(m['answering_s'] < TARGET_ANSWERING_S)} press → new agent answering "
          f"< {TARGET_ANSWERING_S:g} s: median {m['answering_s']:.3f} s")  # fmt: skip
    lost, errors = sum(r["lost"] for r in local), sum(r["errors"] for r in local)
    print(f"  {mark(lost == 0)} no load message lost: {lost} in all runs")
    print(f"  {mark(errors == 0)} no errors: {errors} in all runs")
    print(f"  {mark(all(r['live'] for r in fly))} Fly: every rollout live")
    print(f"  {mark(sum(r['429s'] for r in fly) == 0)} Fly: no 429 ({f['429s']:g} median)")
    print(f"  {mark(all(r['envs_ok'] for r in fly))} Fly: every machine on the merge sha")


if __name__ == "__main__":
    main()
