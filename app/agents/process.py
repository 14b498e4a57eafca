"""One running agent host, seen from the core: its pipes, its frames, its deadlines.

`HostProcess` starts the host's command (`app.agents.jail`), waits for its hello, sends it
requests and matches the answers, serves its capability calls, and logs what it prints. A
host that breaks the protocol, sends a frame over the cap, exits or misses a deadline is
killed, and every call waiting on it fails with one line (`AgentFailed`). A host never holds
the core's loop: its frames are taken one a turn, its output read in chunks (slowly once
muted), and one that leaves `MAX_UNREAD` bytes of what the core sends it unread is killed.
A process is never restarted; `app.agents.hosted` starts a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.agents import protocol
from app.agents.base import PermissionDenied
from app.agents.jail import Jail

log = logging.getLogger(__name__)

START_TIMEOUT = 10.0  # from spawn to the host's hello
STOP_GRACE = 2.0
STDERR_LINES = 200  # what a host may log over its life before it is muted
STDERR_CHUNK = 64 * 1024  # what is read of a host's stderr at a time
MUTED_PAUSE = 0.05  # between chunks of a muted host's stderr: a flood blocks the host, not us
# What the core holds for a host that does not read it (a legitimate one takes each frame as
# it comes): past this, the host is killed rather than buffered for without bound.
MAX_UNREAD = 4 * protocol.MAX_FRAME
# Capability calls of one host served at once; more are refused at once, so a host that
# floods the core with calls holds a bounded share of it (each call may be an HTTP request).
MAX_CALLS_AT_ONCE = 16


class AgentFailed(RuntimeError):
    """One line for the person: what went wrong with the agent's host."""


Serve = Callable[[str, str, dict[str, Any]], Awaitable[Any]]  # a capability call


@dataclass
class HostFacts:
    pid: int
    sandboxed: bool
    sandbox: dict[str, Any]


class HostProcess:
    """One running host. Not restarted: `HostedAgent` makes a new one."""

    def __init__(self, name: str, jail: Jail, folder: Path, serve: Serve) -> None:
        self.name = name
        self.jail = jail
        self.folder = folder
        self.serve = serve
        self.proc: asyncio.subprocess.Process | None = None
        self.facts: HostFacts | None = None
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.next_id = 0
        self.death: str = ""  # why it ended, once it has
        self.ended = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._hello: asyncio.Future[dict[str, Any]] | None = None
        self._stderr_lines = 0
        self._calls = 0  # capability calls being served

    async def start(self) -> HostFacts:
        argv, env, cwd = self.jail.command(self.folder)
        self._hello = asyncio.get_running_loop().create_future()
        self.proc = await asyncio.create_subprocess_exec(
            *argv, env=env, cwd=cwd, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            start_new_session=True, limit=protocol.MAX_FRAME + 1,
        )  # fmt: skip
        self._spawn(self._read())
        self._spawn(self._log())
        try:
            hello = await asyncio.wait_for(asyncio.shield(self._hello), START_TIMEOUT)
        except TimeoutError:
            self.kill(f"did not start within {START_TIMEOUT:.0f} s")
            raise AgentFailed(self.death) from None
        except AgentFailed:
            raise
        except BaseException:  # cancelled (a stop during the start): no host left behind
            await self.abort("its start was interrupted")
            raise
        self.facts = HostFacts(
            int(hello.get("pid", 0)), self.jail.sandboxed, dict(hello.get("sandbox") or {})
        )
        return self.facts

    def _spawn(self, work: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def request(self, op: str, deadline: float, **args: Any) -> Any:
        if self.death:
            raise AgentFailed(self.death)
        self.next_id += 1
        ident = self.next_id
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[ident] = future
        try:
            self._write(protocol.request(ident, op, **args))
            answer = await asyncio.wait_for(future, deadline)
        except TimeoutError:
            self.kill(f"missed its {deadline:.0f} s deadline ({op})")
            raise AgentFailed(self.death) from None
        except asyncio.CancelledError:
            # Whoever waited gave up (their own deadline): the host may be spinning.
            self.kill(f"missed its deadline ({op})")
            raise
        finally:
            self.pending.pop(ident, None)
        if "error" in answer:
            error = answer["error"] if isinstance(answer["error"], dict) else {}
            raise HostError(
                str(error.get("message", "failed"))[:2000], str(error.get("traceback", ""))
            )
        return answer.get("result")

    def _write(self, frame: dict[str, Any]) -> None:
        assert self.proc is not None
        assert self.proc.stdin is not None
        if self.proc.stdin.is_closing():
            raise AgentFailed(self.death or "its host is stopping")
        self.proc.stdin.write(protocol.encode(frame))
        if self.proc.stdin.transport.get_write_buffer_size() > MAX_UNREAD:
            self.kill(
                f"broke the protocol: it does not read what the core sends"
                f" (over {MAX_UNREAD >> 20} MiB unread)"
            )

    async def _read(self) -> None:
        assert self.proc is not None
        assert self.proc.stdout is not None
        stdout = self.proc.stdout
        try:
            while True:
                try:
                    line = await stdout.readuntil(b"\n")
                except asyncio.IncompleteReadError:
                    break
                except asyncio.LimitOverrunError:
                    raise protocol.ProtocolError(
                        f"a frame over the {protocol.MAX_FRAME} byte cap"
                    ) from None
                if self.death:
                    continue  # killed: what it still sent is drained, not acted on
                self._take(protocol.decode(line))
                await asyncio.sleep(0)  # a frame a turn: a flood of them cannot hold the loop
        except protocol.ProtocolError as exc:
            self.kill(f"broke the protocol: {exc}")
        except Exception as exc:  # anything else from a hostile host is a breach too
            self.kill(f"broke the protocol: {type(exc).__name__}")
        code = await self.proc.wait()
        self._ended(f"exited ({_exit(code)})")

    def _take(self, frame: dict[str, Any]) -> None:
        op = frame.get("op")
        if op == "hello":
            if self._hello is None or self._hello.done():
                raise protocol.ProtocolError("a second hello")
            self._hello.set_result(frame)
        elif op == "call":
            self._spawn(self._call(frame))
        elif op is None:
            ident = frame.get("id")
            future = self.pending.get(ident) if isinstance(ident, int) else None
            if future is None:
                raise protocol.ProtocolError(f"an answer to no request ({ident!r})")
            if not future.done():
                future.set_result(frame)
        else:
            raise protocol.ProtocolError(f"unknown request {str(op)[:40]!r}")

    async def _call(self, frame: dict[str, Any]) -> None:
        ident = frame.get("id")
        if not isinstance(ident, str) or len(ident) > 40:
            self.kill("broke the protocol: a call without a proper id")
            return
        args = frame.get("args")
        if not isinstance(args, dict):
            self.kill("broke the protocol: a call without arguments")
            return
        if self._calls >= MAX_CALLS_AT_ONCE:
            busy = f"more than {MAX_CALLS_AT_ONCE} capability calls at once; try again"
            reply = protocol.error(ident, "failed", busy)
        else:
            reply = await self._serve(ident, args)
        if not self.death:
            with contextlib.suppress(AgentFailed, ConnectionError, protocol.ProtocolError):
                self._write(reply)

    async def _serve(self, ident: str, args: dict[str, Any]) -> dict[str, Any]:
        self._calls += 1
        try:
            value = await self.serve(
                str(args.get("capability")), str(args.get("method")), args.get("args") or {}
            )
            return protocol.result(ident, value)
        except PermissionDenied as exc:
            return protocol.error(ident, "denied", str(exc))
        except Exception as exc:  # the capability's failure is the agent's answer
            return protocol.error(ident, "failed", str(exc) or type(exc).__name__)
        finally:
            self._calls -= 1

    async def _log(self) -> None:
        """Log what the host prints, a line at a time, up to `STDERR_LINES` over its life.
        Read in chunks, never a line at a time: a flood of short lines would otherwise keep
        the core's loop busy for as long as it lasts."""
        assert self.proc is not None
        assert self.proc.stderr is not None
        agent_log = logging.getLogger(f"agent.{self.name}")
        partial = b""
        while chunk := await self.proc.stderr.read(STDERR_CHUNK):
            if self._stderr_lines > STDERR_LINES:
                dead = self.death or self.proc.returncode is not None
                await asyncio.sleep(0 if dead else MUTED_PAUSE)
                continue
            *lines, partial = (partial + chunk).split(b"\n")
            partial = partial[:1000]  # only a line's start is logged
            self._log_lines(agent_log, lines)
            await asyncio.sleep(0)
        if partial and self._stderr_lines <= STDERR_LINES:
            self._log_lines(agent_log, [partial])

    def _log_lines(self, agent_log: logging.Logger, lines: list[bytes]) -> None:
        for line in lines[: max(0, STDERR_LINES - self._stderr_lines)]:
            agent_log.info("%s", line.decode(errors="replace").rstrip()[:500])
        self._stderr_lines += len(lines)
        if self._stderr_lines > STDERR_LINES:
            agent_log.warning("host of %s logs too much; the rest is dropped", self.name)

    def kill(self, why: str) -> None:
        if not self.death:
            self.death = why
            log.warning("agent host %s: %s", self.name, why)
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self._fail_pending()

    def _ended(self, how: str) -> None:
        if not self.death:
            self.death = how
        self._fail_pending()
        if self._hello is not None and not self._hello.done():
            self._hello.set_exception(AgentFailed(f"its host {self.death} before it started"))
        self.ended.set()

    def _fail_pending(self) -> None:
        for future in self.pending.values():
            if not future.done():
                future.set_exception(AgentFailed(self.death))

    async def abort(self, why: str) -> None:
        """Kill it and wait until it is gone (a start cut short: the loop may close next,
        and must not find its pipes open)."""
        self.kill(why)
        if self.proc is not None and self.proc.stdin is not None:
            self.proc.stdin.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.ended.wait(), STOP_GRACE)

    async def stop(self) -> None:
        """Close its stdin (it stops by itself), and kill it if it does not."""
        if self.proc is None:
            return
        if self.proc.stdin is not None and not self.proc.stdin.is_closing():
            self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.ended.wait(), STOP_GRACE)
        except TimeoutError:
            self.kill("did not stop when asked")
            await self.ended.wait()
        if not self.death or self.death.startswith("exited"):
            self.death = "stopped"


class HostError(Exception):
    """The agent's own code raised (in the host); the message and traceback say what."""

    def __init__(self, message: str, trace: str = "") -> None:
        super().__init__(message)
        self.trace = trace


def _exit(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"signal {-code}"
    return f"code {code}"
