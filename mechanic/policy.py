"""What generated code may touch: paths, imports and calls, decided before anything runs.

Generated code is untrusted until this says otherwise. The path policy keeps a change inside
`dynamic/` and `tests/dynamic/`. The code policy reads the Python source (never runs it) and
allows imports from a short list, widened only by the manifest's permissions, and refuses
the calls that reach outside a sandboxed agent: processes, `eval`/`exec`, dynamic imports,
reflection on builtins, raw sockets, file writes.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from mechanic import redaction

ALLOWED_ROOTS = ("dynamic/", "tests/dynamic/")
ALLOWED_SUFFIXES = frozenset({".py", ".toml", ".md", ".txt", ".json"})

# Modules any agent may import: computation, text, time, data shapes. No I/O beyond logging.
SAFE_MODULES = frozenset({
    "__future__", "asyncio", "base64", "collections", "dataclasses", "datetime", "decimal",
    "enum", "fractions", "functools", "hashlib", "itertools", "json", "logging", "math",
    "operator", "random", "re", "statistics", "string", "textwrap", "time", "typing",
    "uuid", "zoneinfo", "app.agents.base",
})  # fmt: skip
# What a manifest permission adds.
PERMISSION_MODULES = {
    "modbus": frozenset({"pymodbus"}),
    "http": frozenset({"httpx"}),
}
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
        return f"{where}: {self.message} [{self.rule}]"


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


def check_source(
    path: str, source: str, permissions: Iterable[str] = (), *, test: bool = False
) -> list[Violation]:
    """Imports and calls in one Python file. A syntax error is a violation, not a crash."""
    try:
        tree = ast.parse(source, filename=path)
    except SyntaxError as exc:
        return [Violation(path, exc.lineno or 0, "syntax", f"syntax error: {exc.msg}")]
    allowed = set(SAFE_MODULES)
    for permission in permissions:
        allowed |= PERMISSION_MODULES.get(permission, frozenset())
    if test:
        allowed |= TEST_MODULES
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
