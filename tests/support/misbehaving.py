"""An agent that misbehaves towards the core rather than trying to escape its host, for
tests/test_hostile_agents.py: protocol garbage, frames and replies over their caps, a CPU
limit passed, deadlines missed, memory filled, floods of logs and of capability calls."""

from __future__ import annotations

# `handle` does what the message says; `AT_IMPORT` and `AT_ACTIVATE` are done unasked. It
# only ever runs in a host, never through validation, so it imports what it likes.
MISBEHAVING = '''
import asyncio
import os
import resource
import uuid

from app.agents.base import Agent

BORN = uuid.uuid4().hex[:8]  # one per host: a restart shows as a new value
AT_IMPORT = "{at_import}"
AT_ACTIVATE = "{at_activate}"


def protocol_fd():
    """The host dup()ed its stdout for the protocol: the one pipe that is neither stdin nor
    stderr (where stdout now points)."""
    known = {{os.fstat(0).st_ino, os.fstat(2).st_ino}}
    for fd in range(3, 64):
        try:
            stat = os.fstat(fd)
        except OSError:
            continue
        if stat.st_mode & 0o170000 == 0o010000 and stat.st_ino not in known:
            return fd
    raise OSError("no protocol pipe")


def call_frames(count):
    frame = b'{{"v":1,"id":"flood","op":"call","args":{{"capability":"state","method":"keys"}}}}\\n'
    return frame * count


def flood(fd, data):
    while True:
        os.write(fd, data)


async def misbehave(what):
    if what == "ok":
        return f"ok {{BORN}}"
    if what == "garbage":
        os.write(protocol_fd(), b"garbage\\n")
        await asyncio.sleep(60)
    if what == "frame":
        os.write(protocol_fd(), b"x" * (2 << 20) + b"\\n")
        await asyncio.sleep(60)
    if what == "reply":
        return "x" * 20_000
    if what == "huge":
        return "x" * (2 << 20)
    if what == "cpu":
        usage = resource.getrusage(resource.RUSAGE_SELF)
        used = int(usage.ru_utime + usage.ru_stime)
        hard = resource.getrlimit(resource.RLIMIT_CPU)[1]
        resource.setrlimit(resource.RLIMIT_CPU, (used + 1, hard))
        while True:
            pass
    if what == "sleep":
        await asyncio.sleep(3600)
    if what == "spin":
        while True:
            pass
    if what == "balloon":
        held = []
        try:
            while True:
                held.append(b"x" * (8 << 20))
        except MemoryError:
            pass
        await asyncio.sleep(1)
        return f"held {{len(held) * 8}} MiB"
    # The floods start once the call is answered: no deadline runs for them.
    if what == "logs":
        asyncio.get_running_loop().call_soon(flood, 2, b"\\n" * 65536)
        return "flooding its log"
    if what == "calls":  # and never reads the answers
        asyncio.get_running_loop().call_soon(flood, protocol_fd(), call_frames(500))
        return "flooding the core with calls"
    if what == "polite-calls":  # reads the answers between bursts
        fd, sent, until = protocol_fd(), 0, asyncio.get_running_loop().time() + 1
        while asyncio.get_running_loop().time() < until:
            os.write(fd, call_frames(50))
            sent += 50
            await asyncio.sleep(0)
        return f"sent {{sent}} calls"
    return f"{{what}}?"


class Misbehaving(Agent):
    async def activate(self, ctx):
        await misbehave(AT_ACTIVATE)

    async def handle(self, message, ctx):
        return await misbehave(message.text)


if AT_IMPORT == "garbage":
    os.write(protocol_fd(), b"garbage\\n")
if AT_IMPORT == "spin":
    while True:
        pass
'''


def misbehaving_source(*, at_import: str = "", at_activate: str = "ok") -> str:
    return MISBEHAVING.format(at_import=at_import, at_activate=at_activate)
