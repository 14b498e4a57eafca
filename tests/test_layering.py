"""Which way imports point: `mechanic` is a library, the web process stays light, and no
two modules of `app` import each other, even from inside a function or under TYPE_CHECKING
(the usual ways a circle is dodged rather than broken)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

APP = Path(__file__).resolve().parents[1] / "app"


def modules_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return set(done.stdout.split())


def test_mechanic_imports_nothing_from_app() -> None:
    loaded = modules_after("import mechanic, mechanic.aider_version")
    assert not {m for m in loaded if m == "app" or m.startswith("app.")}


def test_the_web_process_does_not_load_aider_or_githubs_sdk() -> None:
    loaded = modules_after("import app.web.server, app.cli")
    assert not {m for m in loaded if m.startswith(("aider", "githubkit", "mechanic."))}


def test_the_telegram_handlers_import_without_the_channel() -> None:
    """The channel imports its handlers; a handler names the `Speaker` protocol instead."""
    loaded = modules_after(
        "import app.telegram.handlers.access, app.telegram.handlers.callbacks,"
        " app.telegram.handlers.messages"
    )
    assert "app.telegram.handlers.callbacks" in loaded
    assert "app.telegram.channel" not in loaded
    assert "app.telegram.channel" not in imports_of(APP / "telegram" / "handlers")


def test_no_two_modules_of_app_import_each_other() -> None:
    graph = import_graph(APP)
    assert len(graph) > 100  # the whole package was read
    assert circles(graph) == []


def imports_of(folder: Path) -> set[str]:
    graph = import_graph(APP)
    inside = {module_name(path) for path in folder.rglob("*.py")}
    return set().union(*(graph[name] for name in inside))


def module_name(path: Path) -> str:
    parts = path.relative_to(APP.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module → the modules of `root` it imports anywhere in its text. `from pkg import mod`
    counts as importing `mod`; a module's own packages are not counted (Python imports
    them first in any case)."""
    paths = {module_name(path): path for path in root.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the package, `level - 1` steps up
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*up, base] if base else up)
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    found.add(full if full in paths else base)
        graph[name] = {
            module
            for module in found
            if module in paths and module != name and not name.startswith(module + ".")
        }
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The groups of modules that reach each other (Tarjan's strongly connected components)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for other in sorted(graph[module]):
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            group = [stack.pop()]
            while group[-1] != module:
                group.append(stack.pop())
            if len(group) > 1:
                found.append(sorted(group))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found
