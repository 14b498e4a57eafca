"""Is the change safe and working?

The rules come first, and a change that breaks one is refused before anything of it runs:
its paths, the agents its plan names, the size caps (all without reading a file), then
secrets and the code lint. Then ruff. Only a change that passes both has its generated
tests and the load smoke run. Every check runs in the validation sandbox
(`mechanic.sandbox.run_sealed`): no network, an environment built from nothing, a read-only
filesystem but for the worktree and a scratch folder, limits, a time limit.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mechanic import policy, sandbox

# Loads every agent in process, inside the sandbox (a deployed agent runs in a host).
_SMOKE = """
import asyncio, json
from pathlib import Path
from app.agents.testing import smoke
print(json.dumps(asyncio.run(smoke(Path("dynamic/agents")))))
"""
# The packages generated tests import (`app.agents.testing`), where this process has them:
# the worktree's own copy comes first on the path when it has one.
_PACKAGES = ("app", "mechanic")


@dataclass
class Report:
    ok: bool = True
    problems: list[str] = field(default_factory=list)  # what a person (and Aider) should read
    steps: dict[str, str] = field(default_factory=dict)  # step -> "ok" | "failed"
    policy_refused: bool = False  # a policy refusal is not repaired by Aider: the job stops
    sandboxed: bool = True  # False: no bubblewrap here, the checks ran without the sandbox

    def fail(self, step: str, problems: list[str]) -> None:
        self.ok = False
        self.steps[step] = "failed"
        self.problems += problems


async def validate(
    worktree: Path, changed: list[str], agent: str, *, others: Sequence[str] = (),
    time_limit: float = 120,
) -> Report:  # fmt: skip
    """Validate the change `changed` (paths relative to `worktree`) of agent `agent`;
    `others` are the other agents its plan names, which it may also edit or remove."""
    report = Report(sandboxed=sandbox.bwrap() is not None)
    violations = [
        *policy.check_paths(changed, worktree),
        *policy.check_scope(changed, [agent, *others], worktree),
        *policy.check_size(changed, worktree),
    ]
    if not violations:  # only a change within the caps is read
        violations = _content_rules(worktree, changed)
    if violations:
        report.policy_refused = True
        report.fail("policy", [str(v) for v in violations])
        return report
    report.steps["policy"] = "ok"

    python = [p for p in changed if p.endswith(".py") and (worktree / p).exists()]
    if python:
        ruff = ["-m", "ruff", "check", "--no-cache", "--output-format", "concise", *python]
        done = await _run(ruff, worktree, time_limit, may_exec=True)  # it reads, never runs
        if done.code != 0:
            report.fail("ruff", _tail(done.output, 30, first=True))
            return report  # the change does not run before it reads right
        report.steps["ruff"] = "ok"

    tests = [p for p in changed if p.startswith("tests/dynamic/") and p.endswith(".py")]
    if not tests:
        report.fail("tests", ["the change has no test under tests/dynamic/"])
    else:
        pytest = ["-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests]
        done = await _run(pytest, worktree, time_limit)
        if done.code != 0:
            report.fail("tests", _tail(done.output))
        else:
            report.steps["tests"] = "ok"

    done = await _run(["-c", _SMOKE], worktree, time_limit)
    try:
        smoke = json.loads(done.output.strip().splitlines()[-1])
        loaded, quarantined = list(smoke["loaded"]), dict(smoke["quarantined"])
    except (ValueError, IndexError, KeyError, TypeError):
        report.fail("load", ["the load smoke did not report: " + " ".join(_tail(done.output))])
        return report
    if agent in quarantined:
        report.fail("load", [f"{agent} is quarantined: {quarantined[agent]}"])
    elif agent not in loaded:
        report.fail("load", [f"{agent} did not load"])
    else:
        report.steps["load"] = "ok"
    return report


def _content_rules(worktree: Path, changed: list[str]) -> list[policy.Violation]:
    found: list[policy.Violation] = []
    for path in changed:
        full = worktree / path
        if not full.is_file() or full.is_symlink():
            continue
        text = full.read_text(errors="replace")
        found += policy.check_secrets(path, text)
        if path.endswith(".py"):
            found += policy.check_source(path, text, test=path.startswith("tests/"))
    return found


def _tail(out: str, lines: int = 40, *, first: bool = False) -> list[str]:
    kept = [line for line in out.splitlines() if line.strip()]
    return kept[:lines] if first else kept[-lines:]


async def _run(
    args: list[str], worktree: Path, time_limit: float, *, may_exec: bool = False
) -> sandbox.Finished:
    scratch = worktree.parent / "check-tmp"  # beside the worktree: nothing lands in the commit
    scratch.mkdir(exist_ok=True)
    return await sandbox.run_sealed(
        args, worktree=worktree, scratch=scratch, read_only=_packages(),
        time_limit=time_limit, may_exec=may_exec,
    )  # fmt: skip


def _packages() -> list[Path]:
    found: list[Path] = []
    for name in _PACKAGES:
        spec = importlib.util.find_spec(name)
        found += [Path(p) for p in (spec.submodule_search_locations or [])] if spec else []
    return found
