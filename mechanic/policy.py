"""What a generated change may touch: paths, agents, sizes, imports and calls, decided
before anything of it runs.

The path rules keep a change inside `dynamic/` and `tests/dynamic/`, to the agents its plan
names, and under the size caps; they hold, and a change that breaks them is refused.

The code rules read the Python source (never run it) and allow imports from a short list
and refuse the calls that reach outside an agent: processes, `eval`/`exec`, dynamic
imports, reflection on builtins, raw sockets, file writes. They are a fast lint for the
model's mistakes, not a wall: a filter over Python source cannot be sound, and a
determined piece of code gets past it. What protects the bot is the operating system's
boundary: generated checks run in the validation sandbox (`mechanic.sandbox`), and a
deployed agent in a sandboxed host process of its own, whose every capability (`http`,
`modbus`, `state`) the core serves and checks against what a person granted. No manifest
permission widens these imports: an agent never imports `httpx` or `pymodbus`.
"""

from __future__ import annotations

import ast
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from mechanic import redaction

ALLOWED_ROOTS = ("dynamic/", "tests/dynamic/")
ALLOWED_SUFFIXES = frozenset({".py", ".toml", ".md", ".txt", ".json"})
# Size caps of one change, refused before anything runs.
MAX_FILE_BYTES = 64 * 1024
MAX_CHANGE_BYTES = 256 * 1024
MAX_FILES = 20

# Modules any agent may import: computation, text, time, data shapes. No I/O beyond logging;
# the core serves `http`, `modbus` and `state` on the agent's behalf (`ctx.capability`).
SAFE_MODULES = frozenset({
    "__future__", "asyncio", "base64", "collections", "dataclasses", "datetime", "decimal",
    "enum", "fractions", "functools", "hashlib", "itertools", "json", "logging", "math",
    "operator", "random", "re", "statistics", "string", "textwrap", "time", "typing",
    "uuid", "zoneinfo", "app.agents.base", "app.agents.sdk",
})  # fmt: skip
# Generated tests may also use these.
TEST_MODULES = frozenset({"pytest", "app.agents.testing"})

FORBIDDEN_CALLS = frozenset({
    "eval", "exec", "compile", "__import__", "globals", "locals", "vars", "breakpoint",
    "input", "setattr", "delattr",
})  # fmt: skip
FORBIDDEN_ATTRIBUTES = frozenset({
    "__builtins__", "__subclasses__", "__globals__", "__code__", "__closure__", "__bases__",
    "__mro__", "__dict__", "__getattribute__", "f_globals", "f_locals", "gi_frame",
    "create_subprocess_exec", "create_subprocess_shell", "open_connection", "start_server",
    "open_unix_connection", "start_unix_server", "write_text", "write_bytes", "unlink",
    "rmdir", "rename", "replace", "chmod", "symlink_to",
})  # fmt: skip


@dataclass(frozen=True)
class Violation:
    path: str
    line: int
    rule: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        return (
            f"{where}: {self.message} [{self.rule}]" if where else f"{self.message} [{self.rule}]"
        )


def check_paths(changed: Iterable[str], worktree: Path) -> list[Violation]:
    """Every changed path must stay under the allowed roots, inside the worktree, with an
    allowed suffix, and must not be a symlink (or pass through one)."""
    root = worktree.resolve()
    found: list[Violation] = []
    for raw in changed:
        path = PurePosixPath(raw)
        if path.is_absolute() or ".." in path.parts:
            found.append(Violation(raw, 0, "path.escape", "leaves the repository"))
            continue
        if not raw.startswith(ALLOWED_ROOTS):
            found.append(
                Violation(raw, 0, "path.outside", "only dynamic/ and tests/dynamic/ may change")
            )
            continue
        if any(part.startswith(".") for part in path.parts):
            found.append(Violation(raw, 0, "path.hidden", "hidden files are not allowed"))
            continue
        full = worktree / raw
        inside = [full, *full.parents][: len(path.parts)]  # the path and its folders, in the tree
        if any(part.is_symlink() for part in inside):
            found.append(Violation(raw, 0, "path.symlink", "symlinks are not allowed"))
        elif full.exists() and not full.resolve().is_relative_to(root):
            found.append(Violation(raw, 0, "path.escape", "resolves outside the repository"))
        if path.suffix not in ALLOWED_SUFFIXES:
            kind = path.suffix or "suffix-less"
            found.append(Violation(raw, 0, "path.suffix", f"{kind} files are not allowed"))
    return _unique(found)


def check_scope(changed: Iterable[str], agents: Collection[str], worktree: Path) -> list[Violation]:
    """A change adds, modifies or removes only files of the agents it names:
    `dynamic/agents/<name>/…` and `tests/dynamic/test_<name>*.py`. A test file belongs to
    the longest agent name it starts with, so `test_echo_bot.py` is echo_bot's, not echo's."""
    changed = list(changed)
    known = set(agents) | _agent_folders(worktree) | {o for p in changed if (o := _folder_of(p))}
    named = ", ".join(sorted(agents))
    found: list[Violation] = []
    for path in changed:
        if not path.startswith(ALLOWED_ROOTS):
            continue  # check_paths refuses it
        owner = _folder_of(path) or _test_of(path, known)
        if owner is None:
            why = f"belongs to no agent: a change may touch only the files of {named}"
            found.append(Violation(path, 0, "scope", why))
        elif owner not in agents:
            why = f"belongs to agent {owner}, which the plan does not name (only {named})"
            found.append(Violation(path, 0, "scope", why))
    return found


def check_size(changed: Iterable[str], worktree: Path) -> list[Violation]:
    """Per file, per change and number of files: `MAX_FILE_BYTES`, `MAX_CHANGE_BYTES`,
    `MAX_FILES`. A removed file weighs nothing."""
    changed = list(changed)
    found: list[Violation] = []
    if len(changed) > MAX_FILES:
        why = f"the change touches {len(changed)} files; at most {MAX_FILES} are allowed"
        found.append(Violation("", 0, "size.files", why))
    total = 0
    for path in changed:
        try:
            size = (worktree / path).lstat().st_size
        except (OSError, ValueError):
            continue  # removed (or a path check_paths refuses)
        total += size
        if size > MAX_FILE_BYTES:
            why = f"is {_kib(size)}; a file may hold at most {_kib(MAX_FILE_BYTES)}"
            found.append(Violation(path, 0, "size.file", why))
    if total > MAX_CHANGE_BYTES:
        why = f"the change's files hold {_kib(total)}; at most {_kib(MAX_CHANGE_BYTES)} in all"
        found.append(Violation("", 0, "size.change", why))
    return found


def check_source(path: str, source: str, *, test: bool = False) -> list[Violation]:
    """Imports and calls in one Python file. A syntax error is a violation, not a crash."""
    try:
        tree = ast.parse(source, filename=path)
    except SyntaxError as exc:
        return [Violation(path, exc.lineno or 0, "syntax", f"syntax error: {exc.msg}")]
    allowed = set(SAFE_MODULES) | (TEST_MODULES if test else set())
    found: list[Violation] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found += _import(path, node.lineno, alias.name, allowed)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: an agent is a single module
                found.append(
                    Violation(path, node.lineno, "import.relative", "relative imports are refused")
                )
            else:
                found += _import(path, node.lineno, node.module or "", allowed)
        elif isinstance(node, ast.Call):
            found += _call(path, node)
        elif isinstance(node, ast.Attribute) and node.attr in FORBIDDEN_ATTRIBUTES:
            found.append(Violation(path, node.lineno, "attribute", f".{node.attr} is not allowed"))
        elif isinstance(node, ast.Name) and node.id in {"__builtins__", "__loader__", "__spec__"}:
            found.append(Violation(path, node.lineno, "name", f"{node.id} is not allowed"))
    return _unique(found)


def check_secrets(path: str, text: str) -> list[Violation]:
    """Credentials written into a file (`mechanic.redaction`); the kind is named, never the
    value, so the violation can go into a fix prompt and a chat."""
    return [
        Violation(path, secret.line(text), "secret",
                  f"a {secret.kind} is written into the file: read it from configuration")
        for secret in redaction.find(text)
    ]  # fmt: skip


def _folder_of(path: str) -> str | None:
    """The agent whose folder holds `path` (`dynamic/agents/<name>/…`)."""
    parts = PurePosixPath(path).parts
    return parts[2] if len(parts) >= 4 and parts[:2] == ("dynamic", "agents") else None


def _test_of(path: str, known: Collection[str]) -> str | None:
    """The agent a generated test belongs to: `tests/dynamic/test_<name>*.py`."""
    parts = PurePosixPath(path).parts
    if len(parts) != 3 or parts[:2] != ("tests", "dynamic") or not path.endswith(".py"):
        return None
    stem = PurePosixPath(path).stem
    return max((n for n in known if stem.startswith(f"test_{n}")), key=len, default=None)


def _agent_folders(worktree: Path) -> set[str]:
    agents = worktree / "dynamic" / "agents"
    return {p.name for p in agents.iterdir() if p.is_dir()} if agents.is_dir() else set()


def _kib(size: int) -> str:
    return f"{size / 1024:,.0f} KiB" if size < 1024**2 else f"{size / 1024**2:,.1f} MiB"


def _import(path: str, line: int, module: str, allowed: set[str]) -> list[Violation]:
    if any(module == ok or module.startswith(ok + ".") for ok in allowed):
        return []
    return [Violation(path, line, "import", f"import of {module!r} is not allowed")]


def _call(path: str, node: ast.Call) -> list[Violation]:
    func = node.func
    name = func.id if isinstance(func, ast.Name) else None
    if name in FORBIDDEN_CALLS:
        return [Violation(path, node.lineno, "call", f"{name}() is not allowed")]
    if name == "getattr" and len(node.args) >= 2 and not isinstance(node.args[1], ast.Constant):
        return [Violation(path, node.lineno, "call", "getattr() with a computed name")]
    if name == "open" and _opens_for_writing(node):
        return [Violation(path, node.lineno, "call", "open() for writing is not allowed")]
    return []


def _opens_for_writing(node: ast.Call) -> bool:
    mode: ast.expr | None = node.args[1] if len(node.args) >= 2 else None
    for keyword in node.keywords:
        if keyword.arg == "mode":
            mode = keyword.value
    if mode is None:
        return False
    if not isinstance(mode, ast.Constant) or not isinstance(mode.value, str):
        return True  # a mode we cannot read is treated as a write
    return any(flag in mode.value for flag in "wax+")


def _unique(found: list[Violation]) -> list[Violation]:
    return list(dict.fromkeys(found))
