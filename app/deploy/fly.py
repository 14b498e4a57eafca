"""The Fly deployer: move the app's machines to a release through the Machines API.

For each machine in turn: take a lease (its nonce goes with every change), update the
machine's config with `PERSAIS_RELEASE=<sha>` (Fly replaces the machine: a fresh root
filesystem, so the process syncs `dynamic/` at that release on boot), wait for `started`
(a 408 from `/wait` is retried until the deadline), ask the machine's `/ready` whether it
runs the release with the expected agents loaded, release the lease. A machine already on
the release is only checked, and one whose config already names it (updated by a run that
was interrupted) is only waited for, so a deploy stopped half-way picks up where it stopped.

The deploying worker runs on one of the machines (`FLY_MACHINE_ID`): that machine goes
last, and updating it replaces the very process doing the deploy. So for that one the
deployer takes the lease, updates, releases the lease and raises `Handoff` without waiting:
the caller queues the rest of the deploy, which the replacement process runs (it finds
every machine on the release and only checks them).

Fly allows 1 request a second per action per machine: every call is paced per (machine,
action), and a 429 is waited out. On any failure the rollout stops and the machines it
moved go back to the previous release.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import httpx

log = logging.getLogger(__name__)
RELEASE_ENV = "PERSAIS_RELEASE"
MAX_RETRIES = 5
PACE_MARGIN = 0.1  # seconds
BOOTING = frozenset({"created", "replacing", "starting", "updating"})


class FlyError(RuntimeError):
    pass


class RollFailed(FlyError):
    def __init__(self, reason: str, moved: list[str], returned: list[str], problems: list[str]):
        super().__init__(reason)
        self.reason = reason
        self.moved = moved
        self.returned = returned
        self.problems = problems  # what went wrong putting machines back, if anything


class Handoff(FlyError):
    """This process's own machine was updated: it is about to be replaced, and the process
    that replaces it must finish the rollout (check every machine, then call it live)."""

    def __init__(self, machine: str, moved: list[str]) -> None:
        super().__init__(f"machine {machine} (this process) is being replaced")
        self.machine = machine
        self.moved = moved


@dataclass(frozen=True)
class Machine:
    id: str
    name: str
    state: str
    instance_id: str
    private_ip: str
    config: dict[str, Any]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Machine:
        return cls(
            str(data["id"]), str(data.get("name") or data["id"]), str(data.get("state", "")),
            str(data.get("instance_id", "")), str(data.get("private_ip", "")),
            dict(data.get("config") or {}),
        )  # fmt: skip

    @property
    def release(self) -> str:
        return str((self.config.get("env") or {}).get(RELEASE_ENV, ""))


@dataclass
class FlyMachines:
    """The Machines API calls the deployer makes, over one httpx client, paced."""

    base_url: str
    token: str
    app: str
    interval: float = 1.0  # Fly: 1 request a second per action per machine
    client: httpx.AsyncClient | None = None
    requests: int = 0
    by_action: dict[str, int] = field(default_factory=dict)
    # When each (app, machine, action) was last called from this process: shared by every
    # client, so a rollback right after a deploy keeps to Fly's pace too.
    _last: ClassVar[dict[tuple[str, str, str], float]] = {}

    def _http(self) -> httpx.AsyncClient:
        if self.client is None:
            self.client = httpx.AsyncClient(
                base_url=self.base_url.rstrip("/"),
                headers={"Authorization": f"Bearer {self.token}"},
                timeout=httpx.Timeout(10.0, read=75.0),  # /wait holds up to 60 s
            )
        return self.client

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()
            self.client = None

    async def _pace(self, machine: str, action: str) -> None:
        key = (self.app, machine, action)
        last = self._last.get(key)
        if last is not None:
            # A margin: Fly measures between arrivals, and one request may travel slower.
            pause = last + self.interval + PACE_MARGIN - time.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)
        self._last[key] = time.monotonic()

    async def call(
        self, method: str, path: str, *, machine: str, action: str, ok: tuple[int, ...] = (200,),
        **kwargs: Any,
    ) -> httpx.Response:  # fmt: skip
        for _ in range(MAX_RETRIES):
            await self._pace(machine, action)
            self.requests += 1
            self.by_action[action] = self.by_action.get(action, 0) + 1
            response = await self._http().request(method, f"/v1/apps/{self.app}{path}", **kwargs)
            if response.status_code == 429:
                await asyncio.sleep(_retry_after(response, self.interval))
                continue
            if response.status_code not in ok:
                raise FlyError(f"{method} {path}: {response.status_code} {_error(response)}")
            return response
        raise FlyError(f"{method} {path}: still rate-limited after {MAX_RETRIES} tries")

    async def list(self) -> list[Machine]:
        response = await self.call("GET", "/machines", machine="*", action="list")
        return [Machine.from_json(m) for m in response.json() if m.get("state") != "destroyed"]

    async def get(self, machine: str) -> Machine:
        response = await self.call("GET", f"/machines/{machine}", machine=machine, action="get")
        return Machine.from_json(response.json())

    async def lease(self, machine: str, ttl: int) -> str:
        response = await self.call(
            "POST", f"/machines/{machine}/lease", machine=machine, action="lease",
            json={"ttl": ttl, "description": "persais deploy"},
        )  # fmt: skip
        return str(response.json()["data"]["nonce"])

    async def release(self, machine: str, nonce: str) -> None:
        await self.call(
            "DELETE", f"/machines/{machine}/lease", machine=machine, action="release",
            headers={"fly-machine-lease-nonce": nonce},
        )  # fmt: skip

    async def update(self, machine: str, config: dict[str, Any], nonce: str) -> Machine:
        response = await self.call(
            "POST", f"/machines/{machine}", machine=machine, action="update",
            json={"config": config}, headers={"fly-machine-lease-nonce": nonce},
        )  # fmt: skip
        return Machine.from_json(response.json())

    async def wait(self, machine: str, instance_id: str, seconds: int) -> bool:
        """True once the machine is started; False on Fly's 408 (not yet)."""
        params = {"state": "started", "timeout": seconds}
        if instance_id:
            params["instance_id"] = instance_id
        response = await self.call(
            "GET", f"/machines/{machine}/wait", machine=machine, action="wait", params=params,
            ok=(200, 408),
        )  # fmt: skip
        return response.status_code == 200


Progress = Callable[[str], Awaitable[None]]


async def _quiet(text: str) -> None:
    return None


# (machine id, machine name, outcome, detail): what happened to one machine, for the ledger
# (outcomes: updating, on, restarting, failed, put_back, not_put_back).
Outcome = Callable[[str, str, str, str], Awaitable[None]]


async def _unrecorded(machine: str, name: str, outcome: str, detail: str) -> None:
    return None


@dataclass
class FlyDeployer:
    machines: FlyMachines
    ready_port: int = 8080
    own_machine: str | None = None  # FLY_MACHINE_ID: the machine this process runs on
    runs: str = ""  # the release this process runs ("" for the image's own agents)
    may_hand_off: bool = True  # False once a replacement has been waited for long enough
    deadline: float = 120.0  # per machine: started, then ready
    lease_ttl: int = 120
    progress: Progress = _quiet
    outcome: Outcome = _unrecorded

    async def roll(self, sha: str | None, expect: set[str], previous: str | None) -> list[str]:
        """Move every machine to `sha` (None: the image's own agents); the ids moved by this
        call. On failure, every machine on `sha` (moved now, or by an interrupted run of the
        same rollout) goes back to `previous`, and RollFailed says why."""
        machines = await self.machines.list()
        machines.sort(key=lambda m: (m.id == self.own_machine, m.name))  # ourselves last
        moved: list[str] = []
        on_release: list[str] = []
        for machine in machines:
            try:
                if await self._move(machine, sha, expect):
                    moved.append(machine.id)
                on_release.append(machine.id)
            except Handoff as handoff:
                handoff.moved = [*moved, machine.id]
                raise
            except (FlyError, httpx.HTTPError) as exc:
                on_release.append(machine.id)  # it may have been updated before it failed
                reason = f"machine {machine.name} ({machine.id}): {exc}"
                await self.outcome(machine.id, machine.name, "failed", str(exc)[:500])
                returned, problems = await self._return(on_release, previous)
                raise RollFailed(reason, [*moved, machine.id], returned, problems) from exc
        return moved

    async def _return(self, moved: list[str], previous: str | None) -> tuple[list[str], list[str]]:
        returned, problems = [], []
        for machine_id in reversed(moved):
            try:
                await self._move(await self.machines.get(machine_id), previous, set())
                returned.append(machine_id)
                await self.outcome(machine_id, "", "put_back", previous or "the image")
            except Handoff:  # this process's machine: updated, so it is being replaced
                returned.append(machine_id)
                await self.outcome(machine_id, "", "put_back", previous or "the image")
            except (FlyError, httpx.HTTPError) as exc:
                problems.append(f"{machine_id}: {exc}")
                await self.outcome(machine_id, "", "not_put_back", str(exc)[:500])
                log.error("machine %s could not be put back on %s: %s", machine_id, previous, exc)
        return returned, problems

    async def _move(self, machine: Machine, sha: str | None, expect: set[str]) -> bool:
        """One machine onto `sha`; False if it already ran it (then only checked)."""
        target = sha or ""
        own = machine.id == self.own_machine
        if machine.release == target:  # updated already, here or by an interrupted run
            if own and self.runs != target:  # and this process is the one being replaced
                if not self.may_hand_off:
                    raise FlyError("it was updated, but this process was not replaced")
                raise Handoff(machine.name, [])
            if machine.state in BOOTING and not own:
                await self._started(machine)
            if own or machine.state in BOOTING or machine.state == "started":
                await self._ready(machine, target, expect)
                await self.outcome(machine.id, machine.name, "on", "already on it")
                return False
            # stopped or failed on the release: update it again
        await self.progress(f"machine {machine.name}{' (this one)' if own else ''}: updating")
        await self.outcome(machine.id, machine.name, "updating", target or "the image")
        nonce = await self.machines.lease(machine.id, self.lease_ttl)
        try:
            config = copy.deepcopy(machine.config)
            env = dict(config.get("env") or {})
            if target:
                env[RELEASE_ENV] = target
            else:
                env.pop(RELEASE_ENV, None)
            config["env"] = env
            updated = await self.machines.update(machine.id, config, nonce)
            if not own:
                await self._started(updated)
        finally:
            try:
                await self.machines.release(machine.id, nonce)
            except (FlyError, httpx.HTTPError) as exc:  # it expires on its own (ttl)
                log.warning("lease on %s not released: %s", machine.id, exc)
        if own:
            await self.outcome(machine.id, machine.name, "restarting", "this process's machine")
            raise Handoff(machine.name, [])
        await self._ready(updated, target, expect)
        await self.progress(f"machine {machine.name}: on {target[:12] or 'the image'}")
        await self.outcome(machine.id, machine.name, "on", target or "the image")
        return True

    async def _started(self, machine: Machine) -> None:
        end = time.monotonic() + self.deadline
        while True:
            remaining = end - time.monotonic()
            if remaining <= 0:
                raise FlyError(f"did not start within {self.deadline:.0f} s")
            if await self.machines.wait(machine.id, machine.instance_id, _whole(remaining)):
                return

    async def _ready(self, machine: Machine, sha: str, expect: set[str]) -> None:
        """The machine's own /ready must name the release and the agents expected."""
        host = f"[{machine.private_ip}]" if ":" in machine.private_ip else machine.private_ip
        url = f"http://{host}:{self.ready_port}/ready"
        end = time.monotonic() + self.deadline
        problem: str | None = "no answer"
        async with httpx.AsyncClient(timeout=5.0) as client:
            while time.monotonic() < end:
                try:
                    problem = readiness_problem(await client.get(url), sha, expect)
                except httpx.HTTPError as exc:
                    problem = f"{type(exc).__name__}"
                if problem is None:
                    return
                if problem.startswith("quarantined"):
                    break  # it booted and said no: waiting will not change that
                await asyncio.sleep(0.2)
        raise FlyError(f"/ready: {problem}")


def readiness_problem(response: httpx.Response, sha: str, expect: set[str]) -> str | None:
    """What keeps a machine's /ready answer from saying "release `sha`, agents `expect`"."""
    if response.status_code != 200:
        return f"{response.status_code} (not ready)"
    report = response.json()
    release = report.get("release") or {}
    if release.get("source") == "starting":
        return "starting (the release is not synced yet)"
    running = str(release.get("sha") or "")
    if running != sha:
        return f"runs release {running[:12] or 'image'}, not {sha[:12] or 'image'}"
    agents = report.get("agents") or {}
    if agents.get("loaded") is None:  # a web-only process runs no agents
        return None
    loaded = {_name(a) for a in agents.get("loaded") or []}
    quarantined = {_name(q): q for q in agents.get("quarantined") or []}
    for name in sorted(expect):
        if name in quarantined:
            q = quarantined[name]
            return f"quarantined {name}: {q.get('reason', '') if isinstance(q, dict) else ''}"
        if name not in loaded:
            return f"agent {name} is not loaded"
    return None


def _name(entry: Any) -> str:
    return str(entry.get("name")) if isinstance(entry, dict) else str(entry)


def _whole(seconds: float) -> int:
    return max(1, min(60, int(seconds)))


def _retry_after(response: httpx.Response, default: float) -> float:
    try:
        return max(default, float(response.headers.get("retry-after", default)))
    except ValueError:
        return default


def _error(response: httpx.Response) -> str:
    try:
        return str(response.json().get("error", ""))[:300]
    except ValueError:
        return response.text[:300]
