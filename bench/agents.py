"""Agent hosts benchmark (issue 16): what running every dynamic agent in a sandboxed process
of its own costs, against importing it into the Persais process as before.

    .venv/bin/python bench/agents.py [--messages 1000] [--starts 20] [--agents 50] [--deploys 3]
                                     [--parts latency,cold,memory,swap,deploy]

1. Latency: an echo agent asked through the registry (`Registry.use`, the command's agent,
   `handle`), once loaded in process (`app.agents.testing.in_process`, the old way) and once
   in its host under bubblewrap (`tests/support/hosts.launcher`, the real HostLauncher).
   Open loop at RATE messages a second: each message is sent when it is due, as its own
   task, and its latency counts from when it was due. The two alternate in blocks, so the
   machine's noise falls on both alike. Targets: added p50 ≤ 5 ms, added p99 ≤ 20 ms.
2. Cold start: spawn → hello → load → activate done, one host at a time, with bubblewrap and
   without (Jail(None)), alternating; beside them, the bare interpreter's start
   (`python -I -S -c pass`) with and without the same bwrap arguments. Target ≤ 400 ms.
3. Memory: N echo agents loaded by one registry (and how long that takes); for each host,
   VmRSS and Pss of the Python process inside the sandbox and of its two bwrap processes
   (bwrap's own and the sandbox's pid 1), idle after the load and after one message each.
   Target ≤ 40 MB per host.
4. Deploy: (a) the whole local path of `bench/deploy.py` ([Deploy] pressed on a Mechanic pull
   request → merge → release → staged load in hosts → smoke → swap, the load at 20/s through
   the orchestrator), press → the new agent answering; beside it, when routing switched
   (the ledger's `live`), and the load's latency and this process's share of a core before
   the press, when no host is involved yet: how far the core itself keeps pace with the
   load on this machine; (b) the registry's swap alone
   (stage a set with a new agent, its hosts started → smoke one message → promote → the new
   agent answering in service) while an existing agent gets 20 messages a second, with 1 and
   with N agents in the set (a stage starts a host for every agent of the set). Targets:
   < 2 s, 0 lost.

The machine is shared and noisy: compare figures of one run, and read medians. How noisy
is printed too: Linux's CPU pressure (the share of time some task waited for a CPU) after
each part.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.agents.base import AgentContext, Message, as_reply  # noqa: E402
from app.agents.capabilities import Broker  # noqa: E402
from app.agents.hosted import HostedAgent  # noqa: E402
from app.agents.jail import Jail, find_bwrap, interpreter  # noqa: E402
from app.agents.manifest import load_manifest  # noqa: E402
from app.agents.process import HostProcess  # noqa: E402
from app.agents.registry import Registry  # noqa: E402
from app.agents.state import MemoryState  # noqa: E402
from app.agents.testing import in_process  # noqa: E402
from bench.procfs import cpu_pressure, cpu_seconds, memory_kb, process_tree  # noqa: E402
from bench.stopwatch import Stopwatch  # noqa: E402
from tests.support.agents import write_agent  # noqa: E402
from tests.support.hosts import launcher  # noqa: E402

RATE = 50  # latency: messages a second
BLOCK = 100  # latency: messages per block before switching between in process and host
SWAP_RATE = 20  # deploy: load messages a second
LEAD_S = 1.0  # deploy: load before the swap, and after the new agent answers
TARGETS = {"added_p50_ms": 5.0, "added_p99_ms": 20.0, "cold_start_ms": 400.0,
           "idle_rss_mb": 40.0, "answering_s": 2.0}  # fmt: skip
GREET = """
from app.agents.base import Agent, AgentContext, Message, Reply


class Greet(Agent):
    async def handle(self, message: Message, ctx: AgentContext) -> Reply | str:
        return f"Hello, {message.text}"
"""


def _context(name: str, permissions: frozenset[str]) -> AgentContext:
    return AgentContext(name, permissions, logging.getLogger(f"agent.{name}"), {})


async def ask(registry: Registry, command: str, text: str) -> str:
    """One message to `/command`, as the orchestrator routes it: the set in service is held
    for the message, the command's agent handles it."""
    async with registry.use() as agents:
        loaded = agents.by_command(command)
        if loaded is None:
            raise LookupError(f"no agent for /{command}")
        message = Message(text=text, user="bench:1", user_name="Bench",
                          conversation="bench:1", command=command)  # fmt: skip
        return as_reply(await loaded.agent.handle(message, loaded.context)).text


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


# --- 1. latency ---------------------------------------------------------------------------


async def open_loop(registry: Registry, count: int, rate: float) -> list[float]:
    """`count` messages to /echo, one due every 1/rate s; each one's ms from due to answer."""
    start = time.perf_counter() + 0.005

    async def one(n: int) -> float:
        due = start + n / rate
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        text = await ask(registry, "echo", str(n))
        if text != f"Echo: {n}":
            raise AssertionError(f"/echo {n} answered {text!r}")
        return (time.perf_counter() - due) * 1000

    return list(await asyncio.gather(*(one(n) for n in range(count))))


async def latency(agents: Path, messages: int) -> dict[str, Any]:
    registries = {
        "in_process": Registry(agents, [], _context, in_process()),
        "host": Registry(agents, [], _context, launcher()),
    }
    ms: dict[str, list[float]] = {label: [] for label in registries}
    cpu = dict.fromkeys(registries, 0.0)  # this process's CPU seconds, while each was asked
    added_p50: list[float] = []  # per pair of blocks
    try:
        for registry in registries.values():
            loaded = await registry.reload()
            assert "echo" in loaded.agents, loaded.quarantined
            await open_loop(registry, 20, RATE)  # warm-up
        for k in range(max(1, messages // BLOCK)):
            block: dict[str, list[float]] = {}
            for label in sorted(registries, reverse=k % 2 == 1):
                t = time.process_time()
                block[label] = await open_loop(registries[label], BLOCK, RATE)
                cpu[label] += time.process_time() - t
                ms[label] += block[label]
            added_p50.append(
                statistics.median(block["host"]) - statistics.median(block["in_process"])
            )
    finally:
        for registry in registries.values():
            await registry.close()
    report: dict[str, Any] = {"rate_per_s": RATE, "messages_each": len(ms["host"])}
    for label, values in ms.items():
        report[label] = {
            "p50_ms": percentile(values, 50), "p99_ms": percentile(values, 99),
            "max_ms": max(values), "core_cpu_us": cpu[label] / len(values) * 1e6,
        }  # fmt: skip
    report["added_p50_ms"] = report["host"]["p50_ms"] - report["in_process"]["p50_ms"]
    report["added_p99_ms"] = report["host"]["p99_ms"] - report["in_process"]["p99_ms"]
    report["added_p50_per_block_ms"] = {
        "min": min(added_p50), "median": statistics.median(added_p50), "max": max(added_p50),
    }  # fmt: skip
    return report


# --- 2. cold start ------------------------------------------------------------------------


async def cold_start(jail: Jail, folder: Path) -> dict[str, float]:
    """One host: spawn → hello → load → activate, then stopped; ms of each step."""
    manifest = load_manifest(folder)
    serve = Broker(manifest.name, manifest.permissions, MemoryState()).serve
    agent = HostedAgent(manifest, folder, jail, serve)
    watch = Stopwatch()
    watch.wrap(HostProcess, "start", "hello")
    t = time.perf_counter()
    try:
        await agent.start()
    finally:
        watch.restore()
    loaded = time.perf_counter()
    await agent.activate(_context(manifest.name, frozenset()))
    done = time.perf_counter()
    assert agent.host is not None
    assert agent.host.proc is not None
    cpu = sum(cpu_seconds(pid) for pid in process_tree(agent.host.proc.pid))
    await agent.deactivate()
    stopped = time.perf_counter()
    hello = watch.seconds["hello"]
    return {"total_ms": (done - t) * 1000, "spawn_to_hello_ms": hello * 1000,
            "load_ms": (loaded - t - hello) * 1000, "activate_ms": (done - loaded) * 1000,
            "stop_ms": (stopped - done) * 1000,
            "cpu_ms": cpu * 1000}  # fmt: skip


async def bare_start(argv: list[str]) -> float:
    t = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(*argv, env={}, cwd="/")
    if await proc.wait() != 0:
        raise RuntimeError(f"{argv[0]} failed")
    return (time.perf_counter() - t) * 1000


async def cold_starts(folder: Path, runs: int) -> dict[str, Any]:
    bwrap = find_bwrap()
    if bwrap is None:
        raise SystemExit("bubblewrap (bwrap) is not installed")
    python = [str(interpreter()), "-I", "-S", "-c", "pass"]
    sandbox = [bwrap, *Jail(bwrap).arguments(folder, root=os.geteuid() == 0), "--"]
    kinds = {"bwrap": Jail(bwrap), "no_bwrap": Jail(None)}
    hosts: dict[str, list[dict[str, float]]] = {kind: [] for kind in kinds}
    floors: dict[str, list[float]] = {"python": [], "bwrap + python": []}
    for n in range(runs):
        for kind in sorted(kinds, reverse=n % 2 == 1):
            hosts[kind].append(await cold_start(kinds[kind], folder))
        floors["python"].append(await bare_start(python))
        floors["bwrap + python"].append(await bare_start([*sandbox, *python]))
    report: dict[str, Any] = {"runs": runs}
    for kind, samples in hosts.items():
        report[kind] = {key: statistics.median(s[key] for s in samples) for key in samples[0]}
        report[kind]["total_runs_ms"] = sorted(round(s["total_ms"]) for s in samples)
    report["bare_start_ms"] = {kind: statistics.median(v) for kind, v in floors.items()}
    return report


# --- 3. memory ----------------------------------------------------------------------------


def host_memory(agent: HostedAgent) -> dict[str, int]:
    """KB of a host: the Python process in the sandbox, and bwrap's two processes."""
    assert agent.host is not None
    assert agent.host.proc is not None
    found = [memory_kb(pid) for pid in process_tree(agent.host.proc.pid)]
    python = [m for m in found if m["name"] != "bwrap"]
    bwraps = [m for m in found if m["name"] == "bwrap"]
    assert len(python) == 1, found
    return {"python_rss": int(python[0]["rss"]), "python_pss": int(python[0]["pss"]),
            "bwrap_rss": sum(int(m["rss"]) for m in bwraps),
            "bwrap_pss": sum(int(m["pss"]) for m in bwraps)}  # fmt: skip


def memory_summary(hosts: list[dict[str, int]]) -> dict[str, float]:
    mb = 1024

    def med(key: str) -> float:
        return statistics.median(h[key] for h in hosts) / mb

    return {
        "python_rss_mb": med("python_rss"),
        "python_rss_max_mb": max(h["python_rss"] for h in hosts) / mb,
        "python_pss_mb": med("python_pss"), "bwrap_rss_mb": med("bwrap_rss"),
        "total_rss_mb": sum(h["python_rss"] + h["bwrap_rss"] for h in hosts) / mb,
        "total_pss_mb": sum(h["python_pss"] + h["bwrap_pss"] for h in hosts) / mb,
    }  # fmt: skip


async def many(agents: Path, count: int) -> dict[str, Any]:
    core_before = int(memory_kb(os.getpid())["rss"])
    registry = Registry(agents, [], _context, launcher())
    t = time.perf_counter()
    loaded = await registry.reload()
    took = time.perf_counter() - t
    try:
        assert len(loaded.agents) == count, loaded.quarantined
        await asyncio.sleep(0.5)
        hosted = [a.agent for a in loaded.agents.values() if isinstance(a.agent, HostedAgent)]
        idle = memory_summary([host_memory(a) for a in hosted])
        commands = [a.manifest.command for a in loaded.agents.values()]
        answers = await asyncio.gather(*(ask(registry, c, "x") for c in commands))
        assert all(a == "Echo: x" for a in answers), answers
        await asyncio.sleep(0.2)
        answered = memory_summary([host_memory(a) for a in hosted])
        core_after = int(memory_kb(os.getpid())["rss"])
    finally:
        await registry.close()
    return {"agents": count, "load_s": took, "idle": idle, "after_one_message": answered,
            "core_rss_added_mb": (core_after - core_before) / 1024}  # fmt: skip


# --- 4. deploy ----------------------------------------------------------------------------


class Steady:
    """/echo n at SWAP_RATE a second to a registry, each message its own task, until stopped."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.sent = 0
        self.latencies: list[float] = []
        self.failed: list[str] = []
        self.stop = asyncio.Event()

    async def run(self) -> None:
        tasks: set[asyncio.Task[None]] = set()
        start = time.perf_counter()
        while not self.stop.is_set():
            due = start + self.sent / SWAP_RATE
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            task = asyncio.create_task(self.one(self.sent, due))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            self.sent += 1
        if tasks:
            await asyncio.wait(tasks, timeout=30)

    async def one(self, n: int, due: float) -> None:
        try:
            text = await asyncio.wait_for(ask(self.registry, "echo", str(n)), 30)
        except Exception as exc:  # counted, not raised
            self.failed.append(repr(exc)[:200])
            return
        if text != f"Echo: {n}":
            self.failed.append(text[:200])
        else:
            self.latencies.append((time.perf_counter() - due) * 1000)


async def swap(work: Path, count: int) -> dict[str, Any]:
    """A registry serving `count` agents (echo among them) gets a new set with a greet agent
    beside them, while echo gets SWAP_RATE messages a second."""
    before, after = work / f"swap{count}-before", work / f"swap{count}-after"
    for root in (before, after):
        write_agent(root, "echo")
        for i in range(count - 1):
            write_agent(root, f"a{i:03d}")
    write_agent(after, "greet", GREET)
    registry = Registry(before, [], _context, launcher())
    await registry.reload()
    load = Steady(registry)
    running = asyncio.create_task(load.run())
    try:
        await asyncio.sleep(LEAD_S)
        t = time.perf_counter()
        staged = await registry.stage(after, "after")
        staged_at = time.perf_counter()
        greet = staged.agents["greet"]
        smoke = Message(text="smoke", user="persais:smoke", user_name="smoke",
                        conversation="persais:smoke", command="greet")  # fmt: skip
        said = as_reply(await greet.agent.handle(smoke, greet.context)).text
        assert said == "Hello, smoke", said
        smoked_at = time.perf_counter()
        await registry.promote(staged)
        promoted_at = time.perf_counter()
        assert await ask(registry, "greet", "you") == "Hello, you"
        answering = time.perf_counter()
        await asyncio.sleep(LEAD_S)
    finally:
        load.stop.set()
        await running
        await registry.close()
    answered = len(load.latencies)
    return {
        "agents": count + 1, "answering_s": answering - t, "live_s": promoted_at - t,
        "stage_s": staged_at - t,
        "smoke_s": smoked_at - staged_at, "promote_s": promoted_at - smoked_at,
        "first_answer_s": answering - promoted_at, "sent": load.sent, "answered": answered,
        "failed": len(load.failed), "lost": load.sent - answered - len(load.failed),
        "p50_ms": percentile(load.latencies, 50) if answered else float("nan"),
        "max_ms": max(load.latencies, default=float("nan")),
        "failures": load.failed[:3],
    }  # fmt: skip


def full_deploys(work: Path, runs: int) -> list[dict[str, Any]]:
    """bench/deploy.py's local deploy (embedded Postgres, local forge, the worker), `runs` times."""
    from bench import deploy
    from tests.support.config import make_settings
    from tests.support.postgres import TestPostgres

    loads: list[Any] = []

    class Kept(deploy.Load):
        """The deploy's load, kept, with this process's CPU time sampled while it runs."""

        def __init__(self, convo: Any) -> None:
            super().__init__(convo)
            self.cpu: list[tuple[float, float]] = []  # (time, CPU seconds)
            loads.append(self)

        async def run(self) -> None:
            sampler = asyncio.create_task(self.sample())
            try:
                await super().run()
            finally:
                sampler.cancel()

        async def sample(self) -> None:
            while True:
                self.cpu.append((time.time(), time.process_time()))
                await asyncio.sleep(0.1)

    pg = TestPostgres(work / "pg")
    results: list[dict[str, Any]] = []
    try:
        with mock.patch.object(deploy, "Load", Kept):  # to read the load's messages afterwards
            for n in range(runs):
                database = pg.fresh_database()
                settings = make_settings(
                    work / f"deploy-{n}", database, PERSAIS_LOG_LEVEL="WARNING"
                )
                result = asyncio.run(deploy.local_deploy(settings, database))
                keys = ("answering_s", "result_s", "sent", "answered", "lost", "p50_ms", "max_ms")
                row = {key: result[key] for key in keys}
                row["failed"] = result["errors"]
                row["stage_s"] = result["steps"].get("registry: stage (load)", float("nan"))
                row["live_s"] = result["timeline"].get("release live", float("nan"))
                row.update(_load_phases(loads[-1]))
                results.append(row)
    finally:
        pg.stop()
    return results


def _load_phases(load: Any) -> dict[str, float]:
    """Of the full deploy's load: when the first message the new agent answered was sent
    (after the press); before the press (no agent host involved yet: `/echo` is unknown),
    the load's latency and the share of a core this process used — the core's own pace."""
    pressed, sent = load.pressed, load.sent
    echoed = [r["at"] - pressed for r in sent if r.get("echo") and r["at"] >= pressed]
    before = [(r["done"] - r["at"]) * 1000 for r in sent if r["at"] < pressed and "done" in r]
    cpu = [(at, used) for at, used in load.cpu if at <= pressed]
    share = (cpu[-1][1] - cpu[0][1]) / (cpu[-1][0] - cpu[0][0]) if len(cpu) > 1 else float("nan")
    return {"first_echoed_sent_s": min(echoed, default=float("nan")),
            "p50_before_press_ms": percentile(before, 50) if before else float("nan"),
            "core_cpu_share": share}  # fmt: skip


# --- report -------------------------------------------------------------------------------


def targets(report: dict[str, Any]) -> list[tuple[bool, str]]:
    t, lines = TARGETS, []
    if lat := report.get("latency"):
        p50, p99 = lat["added_p50_ms"], lat["added_p99_ms"]
        lines.append((p50 <= t["added_p50_ms"], f"added p50 ≤ 5 ms: {p50:.2f} ms"))
        lines.append((p99 <= t["added_p99_ms"], f"added p99 ≤ 20 ms: {p99:.2f} ms"))
    if cold := report.get("cold_start"):
        total = cold["bwrap"]["total_ms"]
        lines.append(
            (total <= t["cold_start_ms"], f"cold start with bwrap ≤ 400 ms: {total:.0f} ms")
        )
    if mem := report.get("memory"):
        idle = mem["idle"]
        text = (
            f"idle RSS per host ≤ 40 MB: {idle['python_rss_mb']:.1f} MB"
            f" (+ bwrap's two processes {idle['bwrap_rss_mb']:.1f} MB)"
        )
        lines.append((idle["python_rss_mb"] <= t["idle_rss_mb"], text))
    runs = [("full deploy", report.get("deploy", []))]
    runs += [(f"registry swap, {s['agents']} agents", [s]) for s in report.get("swap", [])]
    for label, results in runs:
        if results:
            answering = statistics.median(r["answering_s"] for r in results)
            lost = sum(r["lost"] + r["failed"] for r in results)
            lines.append(
                (
                    answering < t["answering_s"] and lost == 0,
                    f"{label} → new agent answering < 2 s, 0 lost:"
                    f" {answering:.3f} s (median), {lost} lost or failed",
                )
            )
    return lines  # fmt: skip


def show_latency(lat: dict[str, Any]) -> None:
    print(
        f"\n1. latency, /echo through the registry, open loop {lat['rate_per_s']}/s,"
        f" {lat['messages_each']} messages each (ms; the core's CPU per message in µs):"
    )
    print("              p50     p99     max   cpu")
    for label in ("in_process", "host"):
        r = lat[label]
        print(
            f"  {label:10} {r['p50_ms']:6.2f}  {r['p99_ms']:6.2f}  {r['max_ms']:6.1f}"
            f"  {r['core_cpu_us']:4.0f}"
        )
    spread = lat["added_p50_per_block_ms"]
    print(f"  added      {lat['added_p50_ms']:6.2f}  {lat['added_p99_ms']:6.2f}"
          f"     (added p50 per block: {spread['min']:.2f} to {spread['max']:.2f})")  # fmt: skip


def show_cold(cold: dict[str, Any]) -> None:
    print(f"\n2. cold start, median of {cold['runs']} (ms):")
    print("            total  spawn→hello  load  activate  stop  host CPU")
    for kind in ("bwrap", "no_bwrap"):
        r = cold[kind]
        print(f"  {kind:8} {r['total_ms']:6.0f}  {r['spawn_to_hello_ms']:11.0f}"
              f"  {r['load_ms']:4.0f}  {r['activate_ms']:8.1f}  {r['stop_ms']:4.0f}"
              f"  {r['cpu_ms']:8.0f}")  # fmt: skip
    floors = ", ".join(f"{k} {v:.0f}" for k, v in cold["bare_start_ms"].items())
    print(f"  bare start: {floors}")


def show_memory(mem: dict[str, Any]) -> None:
    print(f"\n3. memory, {mem['agents']} echo agents loaded in {mem['load_s']:.2f} s (MB):")
    print("                    python RSS (max)   PSS  bwrap RSS  total RSS  total PSS")
    for when in ("idle", "after_one_message"):
        r = mem[when]
        print(f"  {when:17} {r['python_rss_mb']:6.1f} ({r['python_rss_max_mb']:4.1f})"
              f" {r['python_pss_mb']:5.1f}  {r['bwrap_rss_mb']:9.1f}"
              f"  {r['total_rss_mb']:9.0f}  {r['total_pss_mb']:9.0f}")  # fmt: skip
    print(f"  the core's own RSS grew by {mem['core_rss_added_mb']:.1f} MB")


def show_deploy(swaps: list[dict[str, Any]], deploys: list[dict[str, Any]]) -> None:
    print(f"\n4. deploy, load {SWAP_RATE}/s (s; load latency in ms):")
    print(
        "  what                answering   live  stage  sent  answered  lost  failed   p50    max"
    )
    rows = [(f"swap, {s['agents']} agents", s) for s in swaps]
    rows += [(f"full deploy, run {i + 1}", d) for i, d in enumerate(deploys)]
    for label, r in rows:
        print(f"  {label:19} {r['answering_s']:9.3f}  {r['live_s']:5.3f}  {r['stage_s']:5.3f}"
              f"  {r['sent']:4}  {r['answered']:8}  {r['lost']:4}  {r['failed']:6}"
              f"  {r['p50_ms']:4.0f}  {r['max_ms']:5.0f}")  # fmt: skip
    for i, r in enumerate(deploys):
        print(f"  full deploy, run {i + 1}: the first message the new agent answered was sent"
              f" {r['first_echoed_sent_s']:.3f} s after the press; before the press the load's"
              f" p50 was {r['p50_before_press_ms']:.0f} ms and the core used"
              f" {r['core_cpu_share']:.0%} of a core")  # fmt: skip


def show(report: dict[str, Any]) -> None:
    if "latency" in report:
        show_latency(report["latency"])
    if "cold_start" in report:
        show_cold(report["cold_start"])
    if "memory" in report:
        show_memory(report["memory"])
    if report.get("swap") or report.get("deploy"):
        show_deploy(report.get("swap", []), report.get("deploy", []))
    waits = ", ".join(f"{part} {v:.0f} %" for part, v in report["cpu_pressure"].items())
    print(f"\nCPU pressure (some task waiting for a CPU, last 10 s): {waits}")
    print("\ntargets (issue 16):")
    for ok, text in targets(report):
        print(f"  {'✅' if ok else '❌'} {text}")


PARTS = ("latency", "cold", "memory", "swap", "deploy")


async def measure(work: Path, opts: argparse.Namespace) -> dict[str, Any]:
    echo = work / "echo"
    write_agent(echo, "echo")
    fleet = work / "fleet"
    for i in range(opts.agents):
        write_agent(fleet, f"a{i:03d}")
    report: dict[str, Any] = {"cpu_pressure": {"start": cpu_pressure()}}
    if "latency" in opts.parts:
        report["latency"] = await latency(echo, opts.messages)
        report["cpu_pressure"]["latency"] = cpu_pressure()
    if "cold" in opts.parts:
        report["cold_start"] = await cold_starts(echo / "echo", opts.starts)
        report["cpu_pressure"]["cold"] = cpu_pressure()
    if "memory" in opts.parts:
        report["memory"] = await many(fleet, opts.agents)
        report["cpu_pressure"]["memory"] = cpu_pressure()
    if "swap" in opts.parts:
        report["swap"] = [await swap(work, 1), await swap(work, opts.agents)]
        report["cpu_pressure"]["swap"] = cpu_pressure()
    return report


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=1000, help="latency: messages each way")
    parser.add_argument("--starts", type=int, default=20, help="cold starts of each kind")
    parser.add_argument("--agents", type=int, default=50, help="agents loaded at once")
    parser.add_argument("--deploys", type=int, default=3, help="full local deploys")
    parser.add_argument("--parts", default=",".join(PARTS), help="some of: " + ",".join(PARTS))
    opts = parser.parse_args()
    opts.parts = set(opts.parts.split(","))
    if unknown := opts.parts - set(PARTS):
        parser.error(f"unknown parts: {', '.join(sorted(unknown))}")
    logging.basicConfig(level=logging.WARNING)
    work = Path(tempfile.mkdtemp(prefix="persais-agents-bench-"))
    began = time.perf_counter()
    report = asyncio.run(measure(work, opts))
    if "deploy" in opts.parts and opts.deploys:
        report["deploy"] = full_deploys(work, opts.deploys)
        report["cpu_pressure"]["deploy"] = cpu_pressure()
    report["seconds"] = time.perf_counter() - began
    print(json.dumps(report, indent=2, default=float))
    show(report)


if __name__ == "__main__":
    main()
