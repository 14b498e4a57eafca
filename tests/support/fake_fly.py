"""A local Fly.io Machines API (https://fly.io/docs/machines/api/) for the endpoints a
deployer calls, answering in Fly's shapes, plus the machines themselves.

What it imitates:
- one app's machines: list, get, update (new config, a new `instance_id`, then a boot in
  the background: "replacing" → "starting" → "started", or "failed" if the boot raises);
- leases (`fly-machine-lease-nonce`): 409 for a second lease or a release with the wrong
  nonce, 412 for an update of a machine leased by someone else;
- `wait` as a long poll, 408 when the machine does not reach the state in `timeout`
  seconds (fractional timeouts are accepted here to keep tests fast; `instance_id` is
  accepted but only the state is compared);
- Fly's rate limit of one request per second per action per machine (per app for list):
  429 with `Retry-After: 1`. Intervals are measured between request *arrivals*, also for
  the long-polling `wait` (a wait shorter than `min_interval` retried at once gets 429),
  and a 429 does not restart the clock;
- the app running on each machine: machine i answers `GET /ready` on `127.0.0.{2+i}` at
  one port shared by all machines (as every Fly machine listens on 8080): 503 while it is
  not started, else 200 with what its last boot returned;
- or a real process (`attach`): on update Fly stops it (its kill signal, SIGKILL after the
  kill timeout) and starts it again with the machine's new env; it answers its own /ready.

Machines boot when the fake starts; `fake_fly` yields once those boots have settled, so
`boots` already holds one entry per machine. Auth is `Authorization: Bearer <token>`.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from tests.support.loopback import serve

__all__ = ["AppProcess", "FakeFly", "FakeMachine", "Lease", "Request", "fake_fly"]

Json = dict[str, Any]
Boot = Callable[[str, dict[str, str]], Json]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
IMAGE = "registry.fly.io/persais:deployment-1"
OWNER = "persais@fake"
FLY_TOKEN = "fly-test-token"
WAIT_STATES = frozenset({"started", "stopped", "suspended", "destroyed"})
MACHINE_ID = web.AppKey("machine_id", str)
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def ulid() -> str:
    return "".join(secrets.choice(_CROCKFORD) for _ in range(26))


def rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def default_boot(machine_id: str, env: dict[str, str]) -> Json:
    release = {"sha": env.get("PERSAIS_RELEASE", "")}
    return {"ready": True, "release": release, "agents": {"loaded": [], "quarantined": []}}


class Problem(Exception):
    """An error answer as Fly writes it: `{"error": message}`."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


@dataclass
class Lease:
    nonce: str
    expires_at: int  # unix seconds
    description: str
    version: str

    def held(self) -> bool:
        return self.expires_at > time.time()


@dataclass
class AppProcess:
    """The app on a machine as a real process the test runs. `stop` must end it (as Fly
    does: the kill signal, then SIGKILL after kill_timeout); `start` starts it with the
    machine's env and returns once it runs (not once it is ready)."""

    start: Callable[[dict[str, str]], None]
    stop: Callable[[], None]


@dataclass
class FakeMachine:
    id: str
    name: str
    private_ip: str
    config: Json
    instance_id: str = field(default_factory=ulid)
    state: str = "created"
    region: str = "ams"
    created_at: str = field(default_factory=rfc3339)
    updated_at: str = field(default_factory=rfc3339)
    ready: Json = field(default_factory=dict)  # /ready body once started
    error: str | None = None  # why the last boot failed
    lease: Lease | None = None
    never_start: bool = False  # the next update never gets past "starting"
    generation: int = 0  # bumped by each boot, so a superseded boot is dropped
    process: AppProcess | None = None  # a real process instead of the fake's own app

    def json(self) -> Json:
        return {
            "id": self.id, "name": self.name, "state": self.state, "region": self.region,
            "instance_id": self.instance_id, "private_ip": self.private_ip,
            "config": self.config, "created_at": self.created_at, "updated_at": self.updated_at,
        }  # fmt: skip


@dataclass
class Request:
    method: str
    path: str
    machine: str | None
    action: str | None  # "list", "get", "lease", "release", "update", "wait"
    status: int
    at: float  # monotonic


@dataclass
class FakeFly:
    app: str
    token: str
    boot: Boot = default_boot
    boot_seconds: float = 0.2
    min_interval: float = 1.0
    ready_port: int = 0
    machines: dict[str, FakeMachine] = field(default_factory=dict)
    boots: list[tuple[str, Json]] = field(default_factory=list)  # (machine id, env)
    updates: list[tuple[str, Json]] = field(default_factory=list)  # (machine id, env)
    requests: list[Request] = field(default_factory=list)
    rate_limited: list[tuple[str, str]] = field(default_factory=list)  # (machine/app, action)
    _last: dict[tuple[str, str], float] = field(default_factory=dict)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _closing: bool = False

    # === test helpers ====================================================================

    def env(self, machine_id: str) -> Json:
        return dict(self.machines[machine_id].config.get("env", {}))

    def count(self, action: str | None = None, machine: str | None = None) -> int:
        return sum(
            1 for r in self.requests
            if (action is None or r.action == action) and (machine is None or r.machine == machine)
        )  # fmt: skip

    def never_start(self, machine_id: str) -> None:
        """After its next update the machine stays in "starting" and never boots."""
        self.machines[machine_id].never_start = True

    def attach(
        self, machine_id: str, name: str, private_ip: str, process: AppProcess, env: Json
    ) -> FakeMachine:
        """A machine whose app is `process`, already started by the test with `env` (and
        FLY_MACHINE_ID=`machine_id`); it listens on `private_ip` at the ready port."""
        config = {"image": IMAGE, "env": dict(env), "metadata": {"fly_process_group": "app"},
                  "guest": {"cpu_kind": "shared", "cpus": 1, "memory_mb": 1024}}  # fmt: skip
        machine = FakeMachine(machine_id, name, private_ip, config, state="started")
        machine.process = process
        self.machines[machine_id] = machine
        return machine

    def ready_url(self, machine_id: str) -> str:
        return f"http://{self.machines[machine_id].private_ip}:{self.ready_port}/ready"

    # === the machines ====================================================================

    def _start_boot(self, machine: FakeMachine) -> None:
        machine.generation += 1
        task = asyncio.get_running_loop().create_task(self._boot(machine, machine.generation))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _boot(self, machine: FakeMachine, generation: int) -> None:
        process, delay = machine.process, self.boot_seconds
        if process is not None:
            await asyncio.to_thread(process.stop)  # Fly stops the app before replacing it
            delay = 0.0
        elif machine.state == "replacing":
            delay /= 2
            await asyncio.sleep(delay)
        if machine.generation != generation:
            return
        machine.state, machine.updated_at = "starting", rfc3339()
        if machine.never_start:
            machine.never_start = False
            return
        await asyncio.sleep(delay)
        if machine.generation != generation:
            return
        env = self.env(machine.id)
        self.boots.append((machine.id, env))
        state, error, body = "started", None, {}
        try:
            if process is not None:
                await asyncio.to_thread(process.start, env)  # it answers its own /ready
            else:
                body = await asyncio.to_thread(self.boot, machine.id, env)
        except Exception as exc:  # the app failed to start
            state, error = "failed", repr(exc)
        if machine.generation == generation:
            machine.state, machine.error, machine.ready = state, error, body
            machine.updated_at = rfc3339()

    async def _ready(self, request: web.Request) -> web.Response:
        machine = self.machines[request.app[MACHINE_ID]]
        if machine.state != "started":
            body: Json = {"ready": False, "state": machine.state}
            if machine.error:
                body["error"] = machine.error
            return web.json_response(body, status=503)
        return web.json_response(machine.ready)

    # === the API =========================================================================

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Auth, 404s and the rate limit for every endpoint, and the record of requests."""
        action, machine_id = request.match_info.route.name, request.match_info.get("id")
        try:
            if request.headers.get("Authorization") != f"Bearer {self.token}":
                raise Problem(401, "unauthorized")
            if action is None or request.match_info.get("app") != self.app:
                raise Problem(404, "not found")
            if machine_id is not None and machine_id not in self.machines:
                raise Problem(404, "not found")
            key, now = (machine_id or self.app, action), time.monotonic()
            if key in self._last and now - self._last[key] < self.min_interval:
                self.rate_limited.append(key)
                raise Problem(429, "rate limit exceeded", {"Retry-After": "1"})
            self._last[key] = now
            response = await handler(request)
        except Problem as problem:
            response = web.json_response(
                {"error": problem.message}, status=problem.status, headers=problem.headers
            )
        at = time.monotonic()
        self.requests.append(
            Request(request.method, request.path, machine_id, action, response.status, at)
        )
        return response

    def _machine(self, request: web.Request) -> FakeMachine:
        return self.machines[request.match_info["id"]]

    async def _list(self, request: web.Request) -> web.Response:
        return web.json_response([m.json() for m in self.machines.values()])

    async def _get(self, request: web.Request) -> web.Response:
        return web.json_response(self._machine(request).json())

    async def _lease(self, request: web.Request) -> web.Response:
        machine = self._machine(request)
        body = await _body(request)
        held = machine.lease
        if held is not None and _foreign(held, request):
            expires = datetime.fromtimestamp(held.expires_at, UTC).isoformat()
            message = f"lease currently held by {OWNER}, expires at {expires}"
            raise Problem(409, f"failed to create lease: {message}")
        ttl = int(body.get("ttl") or 30)
        description = str(body.get("description") or "")
        keep = held.nonce if held is not None and held.held() else None  # a renewal
        lease = Lease(keep or secrets.token_hex(8), int(time.time()) + ttl, description, ulid())
        machine.lease = lease
        data = {"nonce": lease.nonce, "expires_at": lease.expires_at, "owner": OWNER,
                "description": description, "version": lease.version}  # fmt: skip
        return web.json_response({"status": "success", "data": data})

    async def _release(self, request: web.Request) -> web.Response:
        machine = self._machine(request)
        if _foreign(machine.lease, request):
            raise Problem(409, "lease nonce mismatch")
        machine.lease = None
        return web.json_response({"status": "success"})

    async def _update(self, request: web.Request) -> web.Response:
        machine = self._machine(request)
        if _foreign(machine.lease, request):
            raise Problem(412, "lease mismatch: machine is leased by someone else")
        body = await _body(request)
        config = body.get("config")
        if not isinstance(config, dict):
            raise Problem(400, "invalid config: a config object is required")
        machine.config, machine.instance_id = config, ulid()
        machine.updated_at, machine.error, machine.ready = rfc3339(), None, {}
        self.updates.append((machine.id, self.env(machine.id)))
        if body.get("skip_launch"):
            machine.generation += 1
            machine.state = "stopped"
        else:
            machine.state = "replacing"
            self._start_boot(machine)
        return web.json_response(machine.json())

    async def _wait(self, request: web.Request) -> web.Response:
        """Long-polls until the machine is in `state`; `instance_id` is accepted, not used."""
        machine = self._machine(request)
        state = request.query.get("state", "started")
        if state not in WAIT_STATES:
            raise Problem(400, f"invalid state: {state}")
        try:
            timeout = min(float(request.query.get("timeout", "60")), 60.0)
        except ValueError:
            raise Problem(400, "invalid timeout") from None
        deadline = time.monotonic() + max(timeout, 0.0)
        while not self._closing:
            if machine.state == state:
                return web.json_response({"ok": True})
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.01)
        raise Problem(408, f"deadline_exceeded: machine did not reach state {state}")


def _foreign(lease: Lease | None, request: web.Request) -> bool:
    """A lease is held and the request does not carry its nonce."""
    nonce = request.headers.get("fly-machine-lease-nonce")
    return lease is not None and lease.held() and nonce != lease.nonce


async def _body(request: web.Request) -> Json:
    try:
        body = await request.json() if request.can_read_body else {}
    except ValueError:
        raise Problem(400, "invalid JSON body") from None
    if not isinstance(body, dict):
        raise Problem(400, "the body must be a JSON object")
    return body


def _shared_port(hosts: list[str], port: int | None) -> tuple[int, list[socket.socket]]:
    """Sockets bound to one port on every host (a free one unless `port` is given)."""
    for _ in range(8):
        sockets: list[socket.socket] = []
        want = port or 0
        try:
            for host in hosts:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
                sockets.append(sock)
                sock.bind((host, want))
                want = int(sock.getsockname()[1])
            return want, sockets
        except OSError:
            for sock in sockets:
                sock.close()
            if port:
                raise
    raise OSError(f"no port free on all of {hosts}")


@contextmanager
def fake_fly(
    *,
    app: str = "persais",
    token: str = FLY_TOKEN,
    machines: int = 3,
    boot: Boot | None = None,
    boot_seconds: float = 0.2,
    ready_port: int | None = None,
) -> Iterator[tuple[str, FakeFly]]:
    hosts = [f"127.0.0.{2 + i}" for i in range(machines)]
    port, sockets = _shared_port(hosts, ready_port)
    fake = FakeFly(app, token, boot or default_boot, boot_seconds, ready_port=port)
    for i, host in enumerate(hosts):
        config = {"image": IMAGE, "env": {"PERSAIS_HOME": "/data"},
                  "metadata": {"fly_process_group": "worker"},
                  "guest": {"cpu_kind": "shared", "cpus": 1, "memory_mb": 1024}}  # fmt: skip
        machine = FakeMachine(secrets.token_hex(7), f"{app}-worker-{i + 1}", host, config)
        fake.machines[machine.id] = machine
    runners: list[web.AppRunner] = []

    async def startup(_: web.Application) -> None:
        for machine, sock in zip(fake.machines.values(), sockets, strict=True):
            site_app = web.Application()
            site_app[MACHINE_ID] = machine.id
            site_app.router.add_get("/ready", fake._ready)
            runner = web.AppRunner(site_app, access_log=None)
            await runner.setup()
            await web.SockSite(runner, sock).start()
            runners.append(runner)
            fake._start_boot(machine)

    async def shutdown(_: web.Application) -> None:
        fake._closing = True
        for task in list(fake._tasks):
            task.cancel()
        for runner in runners:
            await runner.cleanup()

    api = web.Application(middlewares=[fake._middleware])
    api.on_startup.append(startup)
    api.on_shutdown.append(shutdown)
    base = "/v1/apps/{app}/machines"
    api.router.add_get(base, fake._list, name="list")
    api.router.add_get(base + "/{id}", fake._get, name="get")
    api.router.add_post(base + "/{id}", fake._update, name="update")
    api.router.add_post(base + "/{id}/lease", fake._lease, name="lease")
    api.router.add_delete(base + "/{id}/lease", fake._release, name="release")
    api.router.add_get(base + "/{id}/wait", fake._wait, name="wait")
    try:
        with serve(api) as api_port:
            deadline = time.monotonic() + 10 + boot_seconds
            while time.monotonic() < deadline and any(
                m.state not in ("started", "failed") for m in fake.machines.values()
            ):
                time.sleep(0.01)
            yield f"http://127.0.0.1:{api_port}", fake
    finally:
        for sock in sockets:
            sock.close()
