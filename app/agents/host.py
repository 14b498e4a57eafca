"""The agent host: one dynamic agent in a process of its own, speaking `app.agents.protocol`
on stdin/stdout.

The core starts it (`app.agents.hosted`), under bubblewrap where there is one
(`app.agents.jail`), as `python -I -S -c <boot> <config>`. Before the agent's code is
imported, the host confines itself: a lower priority, resource limits (address space, CPU
seconds, open files, file size, no core dumps), an unprivileged uid if it started as root, no
new processes, and a seccomp filter (`app.agents.seccomp`). Then it imports the agent, and
serves the core's requests, each in a task of its own; the agent's capability calls go back
to the core as `call` requests. `print()` goes to stderr, never into the protocol.

Stdlib only, plus the agent contract (`app.agents.base`, `sdk`, `loading`, `protocol`).
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import traceback
from pathlib import Path
from typing import Any, BinaryIO

from app.agents import protocol, sdk
from app.agents.base import Agent, AgentContext, PermissionDenied
from app.agents.loading import import_agent, instantiate, reason

NOBODY = 65534


def confine(config: dict[str, Any]) -> dict[str, Any]:
    """Lock this process down; returns what was done, for the core to show."""
    facts: dict[str, Any] = {"seccomp": False}
    os.nice(int(config.get("nice", 10)))
    limits = config.get("limits", {})
    for name, value in limits.items():
        which = getattr(resource, f"RLIMIT_{name.upper()}")
        resource.setrlimit(which, (int(value), int(value)))
    if os.geteuid() == 0 and config.get("drop_to") is not None:
        uid = int(config["drop_to"])
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))
    if config.get("seccomp", True):
        from app.agents import seccomp

        try:
            seccomp.install()
            facts["seccomp"] = True
        except seccomp.SeccompUnavailable as exc:
            facts["seccomp_problem"] = str(exc)
    facts["uid"] = os.getuid()
    return facts


class Host:
    def __init__(self, config: dict[str, Any], out: BinaryIO) -> None:
        self.config = config
        self.out = out
        self.agent: Agent | None = None
        self.ctx: AgentContext | None = None
        self.calls: dict[str, asyncio.Future[Any]] = {}
        self.next_call = 0
        self.tasks: set[asyncio.Task[None]] = set()

    def send(self, frame: dict[str, Any]) -> None:
        try:
            raw = protocol.encode(frame)
        except (protocol.ProtocolError, TypeError, ValueError) as exc:
            if "id" not in frame:
                return
            raw = protocol.encode(protocol.error(frame["id"], "failed", f"cannot send: {exc}"))
        view = memoryview(raw)
        while view:
            written = os.write(self.out.fileno(), view)
            view = view[written:]

    async def serve(self, facts: dict[str, Any]) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=protocol.MAX_FRAME + 1)
        await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(0, "rb", buffering=0)
        )
        self.send({"op": "hello", "pid": os.getpid(), "sandbox": facts})
        while True:
            try:
                line = await reader.readuntil(b"\n")
            except asyncio.IncompleteReadError:
                return  # the core closed our stdin: stop
            frame = protocol.decode(line)  # a core that breaks the protocol ends us
            if "op" in frame:
                task = asyncio.create_task(self.dispatch(frame))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
            else:
                future = self.calls.pop(str(frame.get("id")), None)
                if future is not None and not future.done():
                    future.set_result(frame)

    async def dispatch(self, frame: dict[str, Any]) -> None:
        ident, op, args = frame.get("id"), frame.get("op"), frame.get("args") or {}
        try:
            value = await self.perform(str(op), args)
        except Exception as exc:  # the agent's failure goes back to the core as an error
            trace = "".join(traceback.format_exception(exc))
            kind = "denied" if isinstance(exc, PermissionDenied) else "failed"
            self.send(protocol.error(ident or 0, kind, reason(exc), trace))
            return
        self.send(protocol.result(ident or 0, value))

    async def perform(self, op: str, args: dict[str, Any]) -> Any:
        if op == "load":
            folder = Path(self.config["agent_dir"])
            module = import_agent(folder / "agent.py", f"persais_agent_{args['name']}")
            self.agent = instantiate(module, str(args["name"]), str(args["command"]))
            permissions = frozenset(str(p) for p in args.get("permissions", []))
            self.ctx = sdk.context(str(args["name"]), permissions, self.call)
            return {"class": type(self.agent).__name__}
        agent, ctx = self.agent, self.ctx
        if agent is None or ctx is None:
            raise RuntimeError(f"{op} before load")
        if op == "activate":
            await agent.activate(ctx)
            return None
        if op == "handle":
            message = sdk.message_from_json(args["message"])
            return sdk.reply_to_json(await agent.handle(message, ctx))
        if op == "on_choice":
            answer = await agent.on_choice(str(args["question"]), str(args["choice"]), ctx)
            return sdk.reply_to_json(answer)
        if op == "deactivate":
            await agent.deactivate()
            return None
        raise ValueError(f"unknown request {op!r}")

    async def call(self, capability: str, method: str, args: dict[str, Any]) -> Any:
        self.next_call += 1
        ident = f"c{self.next_call}"
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.calls[ident] = future
        self.send(protocol.request(ident, "call", capability=capability, method=method, args=args))
        answer = await future
        if "error" in answer:
            error = answer["error"] if isinstance(answer["error"], dict) else {}
            message = str(error.get("message", "the core refused"))
            if error.get("kind") == "denied":
                raise PermissionDenied(message)
            raise sdk.CapabilityError(message)
        return answer.get("result")


def main() -> None:
    config = json.loads(sys.argv[1])
    out = os.fdopen(os.dup(1), "wb", buffering=0)  # the protocol's own stdout
    os.dup2(2, 1)  # what the agent prints goes to stderr, which the core logs
    facts = confine(config)
    asyncio.run(Host(config, out).serve(facts))


# What the core runs: `python -I -S -c BOOT <config json>`; `-I -S` leave sys.path the
# stdlib alone, so the SDK's folder is put first by hand.
BOOT = "import sys; sys.path.insert(0, {sdk!r}); from app.agents.host import main; main()"

if __name__ == "__main__":  # `python -m app.agents.host '<config json>'`, by hand
    main()
