"""Static findings: the Mechanic's own policy for `dynamic/`, ruff on changed Python, and
secrets on added lines (`mechanic.redaction`: the finding names the kind, never the value).

The changed files are written (at the head's content) into a scratch folder and checked
there; nothing from the pull request is imported or run. The policy is exactly the one the
Mechanic's own output must pass (`mechanic.policy`): paths, the import allowlist widened by
the agent's manifest, forbidden calls. Ruff runs once over all changed Python files, with
its fixes offered as suggestions when they touch a single line: with the repository's own
ruff configuration from its default branch (`app.review.ruff_config`) when it has one, with
Persais's rules when it has none or ruff refuses it (a review note says so).
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from app.review.diff import Diff
from app.review.findings import Finding, Severity
from app.review.ruff_config import RuffConfig
from mechanic import policy, redaction
from mechanic.workspace import BRANCH_PREFIX

# Ruff's default rules plus bugbear, for a repository without a ruff configuration on its
# default branch (the head's is never read: the pull request controls it).
RUFF_RULES = "E4,E7,E9,F,B"
CONFIG_NAME = "ruff.toml"  # in the scratch folder, beside the files (only .py are written)
_ERRORS = ("E9", "F63", "F7", "F82")  # syntax errors, undefined names, broken statements
RUFF_TIME_LIMIT = 60.0
MAX_SECRETS = 5  # per file


def _in_lane(path: str) -> bool:
    return path.startswith(policy.ALLOWED_ROOTS)


@dataclass
class Checked:
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # for the review's body


async def check(
    diff: Diff, contents: Mapping[str, str], *, head_branch: str = "",
    ruff_config: RuffConfig | None = None,
) -> Checked:  # fmt: skip
    """`contents`: the head's text of the changed files the checks need (see `wanted`);
    `ruff_config`: the repository's, from its default branch."""
    checked = Checked(_policy(diff, contents, mechanic=head_branch.startswith(BRANCH_PREFIX)))
    checked.findings += secrets(diff)
    python = {p: t for p, t in contents.items() if p.endswith(".py") and p in diff}
    if python:
        found, note = await _ruff(python, ruff_config)
        checked.findings += found
        checked.notes += [note] if note else []
    return checked


async def findings(
    diff: Diff, contents: Mapping[str, str], *, head_branch: str = ""
) -> list[Finding]:
    """`check` with Persais's own ruff rules, the findings only."""
    return (await check(diff, contents, head_branch=head_branch)).findings


def wanted(diff: Diff) -> list[str]:
    """Which files' contents the static checks read: changed Python files (not deleted).
    A manifest grants no import (the core serves capabilities), so none is read here."""
    return sorted(
        f.path for f in diff.files.values() if f.status != "removed" and f.path.endswith(".py")
    )


def secrets(diff: Diff) -> list[Finding]:
    """A secret on an added line: pushed, it is in the branch's history already. In a test
    it is most likely made up (a warning: said, not failing the check); anywhere else, an
    error."""
    found: list[Finding] = []
    for file in diff.files.values():
        numbers = sorted(file.added)
        text = "\n".join(file.added[n] for n in numbers)
        test = _is_test(file.path)
        for secret in redaction.find(text)[:MAX_SECRETS]:
            found.append(
                Finding(file.path, numbers[secret.line(text) - 1],
                        "warning" if test else "error",
                        f"This adds what looks like a {secret.kind}. "
                        + ("If it is real: " if test else "")
                        + "pushed, it is in the branch's history, and a later commit does not "
                        "take it out: revoke it, and read it from configuration instead.",
                        "secrets", "secret." + secret.kind.lower().replace(" ", "-"))
            )  # fmt: skip
    return found


def _is_test(path: str) -> bool:
    parts = PurePosixPath(path).parts
    name = parts[-1]
    return (
        any(p in ("tests", "test", "fixtures", "testdata") for p in parts[:-1])
        or name.startswith("test_")
        or name.endswith(("_test.py", ".test.js", ".test.ts", "_test.go"))
    )


def _policy(diff: Diff, contents: Mapping[str, str], *, mechanic: bool) -> list[Finding]:
    lane = [f.path for f in diff.files.values() if _in_lane(f.path) and f.status != "removed"]
    found = [Finding(v.path, None, "error", v.message, "policy", v.rule) for v in _path_rules(lane)]
    for file in diff.files.values():
        if not _in_lane(file.path):
            if mechanic:  # the Mechanic's own pull requests stay in their lane
                found.append(
                    Finding(file.path, None, "error", "a Mechanic change may touch only "
                            "dynamic/ and tests/dynamic/", "policy", "path.outside")
                )  # fmt: skip
            continue
        if file.status == "removed":
            continue
        text = contents.get(file.path)
        if file.path.endswith(".py") and text is not None:
            test = file.path.startswith("tests/")
            for v in policy.check_source(file.path, text, test=test):
                found.append(
                    Finding(file.path, v.line or None, "error", v.message, "policy", v.rule)
                )
    return found


def _path_rules(paths: list[str]) -> list[policy.Violation]:
    """The policy's path rules for paths that are not on disk (no symlink to follow)."""
    if not paths:
        return []
    with tempfile.TemporaryDirectory() as empty:
        return policy.check_paths(paths, Path(empty))


# Rules that judge the repository's layout, which the scratch folder (the changed files
# alone) does not have: INP001 (no `__init__.py` beside a file) flagged every file of a
# package on the review corpus.
WHOLE_TREE_RULES = "lint.extend-per-file-ignores = {'*' = ['INP001']}"


async def _ruff(
    files: Mapping[str, str], config: RuffConfig | None = None
) -> tuple[list[Finding], str]:
    """Ruff's findings, and a note when the repository's configuration was not used."""
    note = ""
    if config is not None and config.problem:
        note = _unusable(config, config.problem)
        config = None
    with tempfile.TemporaryDirectory(prefix="persais-review-") as scratch:
        root = Path(scratch)
        for path, text in files.items():
            target = root / path
            if not target.resolve().is_relative_to(root.resolve()):
                continue  # a hostile path; GitHub would not send one, but still
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        if config is not None:
            (root / CONFIG_NAME).write_text(config.toml())
            options = ["--config", str(root / CONFIG_NAME), "--config", WHOLE_TREE_RULES]
            code, out, err = await _run_ruff(root, files, options)
            if code is None:  # out of time: no findings, as with Persais's rules
                return [], note
            if code == 0:
                return _reports(out, files), note
            note = _unusable(config, "ruff refused it: " + _reason(err, root))
        _, out, _ = await _run_ruff(root, files, ["--isolated", "--select", RUFF_RULES])
    return _reports(out, files), note


def _reason(stderr: str, root: Path) -> str:
    """Ruff's last word on a configuration it refused ("unknown field `bogus`"), without
    the scratch folder's path or a snippet of the TOML we wrote (its lines are not theirs)."""
    said = [
        line.strip() for line in stderr.splitlines()
        if line.strip() and not re.match(r"\s*(\d+\s*)?\|", line)
    ]  # fmt: skip
    last = said[-1] if said else "no reason given"
    last = last.removeprefix("Cause:").strip()
    return last.replace(f"`{root}/{CONFIG_NAME}`", "the configuration")[:200]


def _unusable(config: RuffConfig, why: str) -> str:
    return (
        f"⚠️ The ruff configuration in `{config.source}` on the default branch was not used "
        f"({why}); ruff ran with Persais's rules ({RUFF_RULES})."
    )


async def _run_ruff(
    root: Path, files: Mapping[str, str], options: list[str]
) -> tuple[int | None, bytes, str]:
    """(exit code, JSON report, stderr); the code is None when ruff ran out of time."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ruff", "check", "--no-cache", *options,
        "--output-format", "json", "--exit-zero", *sorted(files),
        cwd=root, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(proc.communicate(), RUFF_TIME_LIMIT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return None, b"", ""
    return proc.returncode, out, err.decode(errors="replace")


def _reports(out: bytes, files: Mapping[str, str]) -> list[Finding]:
    try:
        reports: list[dict[str, Any]] = json.loads(out or b"[]")
    except ValueError:
        return []
    return [_from_ruff(r, files) for r in reports if r.get("filename")]


def _from_ruff(report: dict[str, Any], files: Mapping[str, str]) -> Finding:
    path = _relative(str(report["filename"]), files)
    code = str(report.get("code") or "syntax")
    line = int(report["location"]["row"])
    severity: Severity = "error" if code.startswith(_ERRORS) or code == "syntax" else "warning"
    message = f"`{code}` {report.get('message', '')}".strip()
    return Finding(
        path, line, severity, message, "ruff", code, replacement=_fix(report, files.get(path), line)
    )


def _relative(filename: str, files: Mapping[str, str]) -> str:
    for path in files:
        if filename == path or filename.endswith("/" + path):
            return path
    return filename


def _fix(report: dict[str, Any], text: str | None, line: int) -> str | None:
    """Ruff's fix as the new text of `line`, when every edit stays on that line."""
    fix = report.get("fix") or {}
    edits = fix.get("edits") or []
    if text is None or not edits or fix.get("applicability") == "unsafe":
        return None
    lines = text.splitlines()
    if not 0 < line <= len(lines):
        return None
    current = lines[line - 1]
    for edit in sorted(edits, key=lambda e: e["location"]["column"], reverse=True):
        start, end = edit["location"], edit["end_location"]
        if start["row"] != line or end["row"] != line or "\n" in (edit.get("content") or ""):
            # A whole-line deletion ends at the next line's column 1: an empty suggestion.
            whole = start["row"] == line and end["row"] == line + 1 and end["column"] == 1
            if whole and start["column"] == 1 and not edit.get("content") and len(edits) == 1:
                return ""
            return None
        current = (
            current[: start["column"] - 1]
            + (edit.get("content") or "")
            + current[end["column"] - 1 :]
        )
    return current
