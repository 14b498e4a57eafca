"""A release's files: `dynamic/` (and `tests/dynamic/`) at its commit, materialised once
under `PERSAIS_HOME/releases/<sha>/` with `git archive` and never edited after.

A release directory appears whole or not at all: it is unpacked beside its final place and
renamed into it, and made read-only. Two processes materialising the same commit agree
(the loser of the rename keeps the winner's copy).
"""

from __future__ import annotations

import ast
import asyncio
import io
import os
import re
import secrets
import shutil
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path

from mechanic.sandbox import search_path
from mechanic.workspace import GitError, git

TREES = ("dynamic", "tests/dynamic")
HOT = ("dynamic/", "tests/dynamic/")  # what a hot deploy may carry
_SHA = re.compile(r"^[0-9a-f]{40}$")
_AGENT_PATH = re.compile(
    r"^(?:dynamic/agents/([A-Za-z0-9_]+)/|tests/dynamic/test_([A-Za-z0-9_]+)\.py$)"
)


class ReleaseFilesError(RuntimeError):
    pass


@dataclass(frozen=True)
class ReleaseFiles:
    root: Path  # PERSAIS_HOME/releases/<sha>

    @property
    def agents(self) -> Path:
        return self.root / "dynamic" / "agents"

    @property
    def tests(self) -> Path:
        return self.root / "tests" / "dynamic"


def release_dir(home: Path, sha: str) -> Path:
    return home / "releases" / sha


async def materialise(repository: Path, sha: str, home: Path) -> ReleaseFiles:
    """`dynamic/` and `tests/dynamic/` of `sha` (a commit in `repository`), unpacked once."""
    if not _SHA.match(sha):
        raise ReleaseFilesError(f"{sha!r} is not a full commit id")
    final = release_dir(home, sha)
    if (final / ".complete").is_file():
        return ReleaseFiles(final)
    try:
        await git("cat-file", "-e", f"{sha}^{{commit}}", cwd=repository)
    except GitError:
        raise ReleaseFilesError(f"commit {sha[:12]} is not in {repository}") from None
    listed = await git("ls-tree", "--name-only", sha, "--", *TREES, cwd=repository)
    present = [t for t in TREES if t in listed.split()]
    scratch = final.parent / f".{sha}.{secrets.token_hex(4)}"
    scratch.mkdir(parents=True)
    try:
        if present:
            _unpack(await _archive(repository, sha, present), scratch)
        (scratch / ".complete").write_text(f"{sha}\n")
        _read_only(scratch)
        try:
            os.rename(scratch, final)
        except OSError:  # another process got there first: theirs is the same commit
            if not (final / ".complete").is_file():
                raise
    finally:
        if scratch.exists():
            remove(scratch)
    return ReleaseFiles(final)


async def _archive(repository: Path, sha: str, paths: list[str]) -> bytes:
    proc = await asyncio.create_subprocess_exec(
        "git", "archive", "--format=tar", sha, "--", *paths, cwd=repository,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={"GIT_CONFIG_NOSYSTEM": "1", "HOME": str(repository), "PATH": search_path()},
    )  # fmt: skip
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise ReleaseFilesError(f"git archive failed: {err.decode(errors='replace').strip()}")
    return out


def _unpack(archive: bytes, into: Path) -> None:
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        for member in tar.getmembers():
            parts = Path(member.name).parts
            if (
                not (member.isfile() or member.isdir())
                or member.name.startswith("/")
                or (".." in parts)
            ):
                raise ReleaseFilesError(f"{member.name}: only files and folders may be released")
        if hasattr(tarfile, "data_filter"):  # Python 3.11.4+
            tar.extractall(into, filter="data")
        else:  # pragma: no cover - older 3.11: the members were checked above
            tar.extractall(into)  # noqa: S202


def _read_only(root: Path) -> None:
    for path in sorted(root.rglob("*"), reverse=True):
        mode = path.stat().st_mode
        path.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    root.chmod(root.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def remove(root: Path) -> None:
    """Delete a release directory (read-only by design)."""
    for path in [root, *root.rglob("*")]:
        if path.is_dir() and not path.is_symlink():
            path.chmod(path.stat().st_mode | stat.S_IWUSR)
    shutil.rmtree(root, ignore_errors=True)


def hot_deployable(paths: list[str]) -> list[str]:
    """The paths a hot deploy cannot carry (empty: all of it can)."""
    return [p for p in paths if not p.startswith(HOT)]


def agents_touched(paths: list[str]) -> set[str]:
    """The agents a change touches: `dynamic/agents/<name>/…`, `tests/dynamic/test_<name>.py`."""
    names = set()
    for path in paths:
        match = _AGENT_PATH.match(path)
        if match:
            names.add(match.group(1) or match.group(2))
    return names


def smoke_cases(files: ReleaseFiles, agent: str) -> list[tuple[str, str | None]]:
    """What the agent's generated test says to it and expects back:
    `assert (await ask(agent, "say")).text == "expect"`. With none, one "ping" that must get
    a non-empty answer (as the template's own test does)."""
    path = files.tests / f"test_{agent}.py"
    cases: list[tuple[str, str | None]] = []
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        tree = ast.Module(body=[], type_ignores=[])
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Compare) and len(node.ops) == 1):
            continue
        if not isinstance(node.ops[0], ast.Eq):
            continue
        said, expected = _asked(node.left), node.comparators[0]
        if said is not None and isinstance(expected, ast.Constant):
            cases += [(said, expected.value)] if isinstance(expected.value, str) else []
    return cases or [("ping", None)]


def _asked(node: ast.expr) -> str | None:
    """ "say" from `(await ask(agent, "say")).text`."""
    if not (isinstance(node, ast.Attribute) and node.attr == "text"):
        return None
    call = node.value.value if isinstance(node.value, ast.Await) else None
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name)):
        return None
    if call.func.id != "ask" or len(call.args) != 2:
        return None
    said = call.args[1]
    return said.value if isinstance(said, ast.Constant) and isinstance(said.value, str) else None
