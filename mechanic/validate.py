"""Is the change safe and working? Policy first (nothing runs before it passes), then ruff,
the generated tests and a load smoke, each in a subprocess with a time limit."""

from __future__ import annotations

import asyncio
import json
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from mechanic import policy
from mechanic.sandbox import kill_group, sandbox

_SMOKE = """
import asyncio, json, logging, sys
from pathlib import Path
from app.agents.base import AgentContext
from app.agents.registry import Registry
ctx = lambda name, perms: AgentContext(name, perms, logging.getLogger(name), {})
async def main():
    agents = await Registry(Path("dynamic/agents"), [], ctx).reload()
    print(json.dumps({"loaded": sorted(agents.agents),
                      "quarantined": {n: q.reason for n, q in agents.quarantined.items()}}))
asyncio.run(main())
"""


@dataclass
class Report:
    ok: bool = True
    problems: list[str] = field(default_factory=list)  # what a person (and Aider) should read
    steps: dict[str, str] = field(default_factory=dict)  # step -> "ok" | "failed" | "skipped"
    policy_refused: bool = False  # a policy refusal is not repaired by Aider: the job stops

    def fail(self, step: str, problems: list[str]) -> None:
        self.ok = False
        self.steps[step] = "failed"
        self.problems += problems


async def validate(
    worktree: Path, changed: list[str], agent: str, *, time_limit: float = 120
) -> Report:
    report = Report()
    violations = policy.check_paths(changed, worktree)
    permissions = _permissions(worktree / "dynamic" / "agents" / agent / "agent.toml")
    for path in changed:
        full = worktree / path
        if not full.is_file() or full.is_symlink():
            continue
        text = full.read_text(errors="replace")
        violations += policy.check_secrets(path, text)
        if path.endswith(".py"):
            violations += policy.check_source(
                path, text, permissions, test=path.startswith("tests/")
            )
    if violations:
        report.policy_refused = True
        report.fail("policy", [str(v) for v in violations])
        return report
    report.steps["policy"] = "ok"

    python = [p for p in changed if p.endswith(".py") and (worktree / p).exists()]
    if python:
        code, out = await _run(
            [
                sys.executable,
                "-m",
                "ruff",
                "check",
                "--no-cache",
                "--output-format",
                "concise",
                *python,
            ],
            worktree,
            time_limit,
        )
        if code != 0:
            report.fail("ruff", [line for line in out.splitlines() if line.strip()][:30])
        else:
            report.steps["ruff"] = "ok"

    tests = [p for p in changed if p.startswith("tests/dynamic/") and p.endswith(".py")]
    if not tests:
        report.fail("tests", ["the change has no test under tests/dynamic/"])
    else:
        code, out = await _run(
            [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests],
            worktree,
            time_limit,
        )
        if code != 0:
            report.fail("tests", _tail(out))
        else:
            report.steps["tests"] = "ok"

    code, out = await _run([sys.executable, "-c", _SMOKE], worktree, time_limit)
    try:
        smoke = json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        report.fail("load", ["the load smoke did not report: " + " ".join(_tail(out))])
        return report
    if agent in smoke["quarantined"]:
        report.fail("load", [f"{agent} is quarantined: {smoke['quarantined'][agent]}"])
    elif agent not in smoke["loaded"]:
        report.fail("load", [f"{agent} did not load"])
    else:
        report.steps["load"] = "ok"
    return report


def _permissions(manifest: Path) -> list[str]:
    try:
        data = tomllib.loads(manifest.read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return []
    found = data.get("permissions", [])
    return [p for p in found if isinstance(p, str)] if isinstance(found, list) else []


def _tail(out: str, lines: int = 40) -> list[str]:
    return [line for line in out.splitlines() if line.strip()][-lines:]


async def _run(args: list[str], cwd: Path, time_limit: float) -> tuple[int, str]:
    """Run a check in its own process group with a minimal environment and a time limit."""
    scratch = cwd.parent / "check-tmp"  # beside the worktree, so nothing lands in the commit
    scratch.mkdir(exist_ok=True)
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(scratch),
        "TMPDIR": str(scratch),
        "PYTHONDONTWRITEBYTECODE": "1",
        "LANG": "C.UTF-8",
    }
    # Generated code runs here (its tests, the load smoke): in the same sandbox as Aider,
    # with only the worktree and the scratch folder writable.
    proc = await asyncio.create_subprocess_exec(
        *sandbox(cwd, scratch), *args, cwd=cwd, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), time_limit)
    except TimeoutError:
        kill_group(proc.pid)
        await proc.wait()
        return 124, f"timed out after {time_limit:.0f} s"
    return proc.returncode or 0, out.decode(errors="replace")
