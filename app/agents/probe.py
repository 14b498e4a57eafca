"""Can this machine run an agent host, sandboxed? Found out by trying, not by looking.

`persais doctor` starts a real host of a one-line agent with the same command a deploy uses
and asks it one question. bubblewrap may be installed and still refused: an unprivileged
bwrap needs user namespaces, which a VM (a Fly Machine) allows and plain Docker's default
seccomp profile usually does not.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from app.agents import protocol
from app.agents.jail import Jail

_AGENT = (
    "from app.agents.base import Agent\n"
    "class Probe(Agent):\n"
    "    async def handle(self, message, ctx):\n"
    "        return 'pong ' + message.text\n"
)
_REFUSED = ("namespace", "uid map", "Operation not permitted", "Permission denied")


@dataclass(frozen=True)
class Probe:
    works: bool
    detail: str
    userns_refused: bool = False  # bwrap is there but the kernel or a seccomp profile says no


def probe(jail: Jail, timeout: float = 20.0) -> Probe:
    with tempfile.TemporaryDirectory(prefix="persais-probe-") as folder:
        agent = Path(folder) / "probe"
        agent.mkdir()
        agent.chmod(0o755)
        (agent / "agent.py").write_text(_AGENT)
        (agent / "agent.py").chmod(0o644)
        argv, env, cwd = jail.command(agent)
        frames = [
            protocol.request(1, "load", name="probe", command="probe", permissions=[]),
            protocol.request(2, "activate"),
            protocol.request(3, "handle", message={
                "text": "ping", "user": "doctor", "user_name": "doctor", "conversation": "doctor",
            }),
        ]  # fmt: skip
        given = b"".join(protocol.encode(frame) for frame in frames)
        try:
            done = subprocess.run(
                argv, env=env, cwd=cwd, input=given, capture_output=True, timeout=timeout,
                check=False,
            )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as exc:
            return Probe(False, f"the host did not run: {exc}")
    answers = {}
    for line in done.stdout.splitlines():
        try:
            frame = json.loads(line)
        except ValueError:
            continue
        answers[frame.get("id", frame.get("op"))] = frame
    reply = (answers.get(3) or {}).get("result") or {}
    if reply.get("text") == "pong ping":
        facts = (answers.get("hello") or {}).get("sandbox") or {}
        how = f"uid {facts.get('uid')}, seccomp {'on' if facts.get('seccomp') else 'off'}"
        return Probe(True, how)
    err = done.stderr.decode(errors="replace").strip().splitlines()
    last = err[-1] if err else f"exit code {done.returncode}"
    refused = jail.sandboxed and any(word in last for word in _REFUSED)
    return Probe(False, last[:300], userns_refused=refused)
