"""Turn an agent's folder into an `Agent` instance: import `agent.py` under a module name of
its own and find its one `Agent` subclass.

Only ever called where the agent's code may run: inside its host (`app.agents.host`), or in
a generated test's process, which validation runs in its own sandbox. Never in the core.
Stdlib only, like the host.
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
from pathlib import Path
from types import ModuleType

from app.agents.base import Agent


class AgentLoadError(Exception):
    """An agent's code failed to load; `trace` is its traceback, from wherever it ran."""

    def __init__(self, message: str, trace: str = "") -> None:
        super().__init__(message)
        self.trace = trace


def import_agent(path: Path, module_name: str) -> ModuleType:
    if not path.is_file():
        raise AgentLoadError("agent.py is missing")
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise AgentLoadError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    return module


def instantiate(module: ModuleType, name: str, command: str) -> Agent:
    """The module's one `Agent` subclass, which must agree with its manifest."""
    classes = [
        obj
        for obj in vars(module).values()
        if inspect.isclass(obj)
        and issubclass(obj, Agent)
        and obj is not Agent
        and obj.__module__ == module.__name__
    ]
    if len(classes) != 1:
        raise AgentLoadError(f"agent.py must define one Agent subclass, found {len(classes)}")
    cls = classes[0]
    for attribute, expected in (("name", name), ("command", command)):
        declared = getattr(cls, attribute)
        if declared and declared != expected:
            raise AgentLoadError(
                f"the manifest says {attribute} {expected!r} but {cls.__name__} says {declared!r}"
            )
    if not inspect.iscoroutinefunction(cls.handle):
        raise AgentLoadError(f"{cls.__name__}.handle must be `async def`")
    return cls()


def reason(exc: BaseException, activate_timeout: float = 10.0) -> str:
    if isinstance(exc, SyntaxError):
        return f"syntax error in {Path(exc.filename or '?').name} line {exc.lineno}: {exc.msg}"
    if isinstance(exc, TimeoutError):
        return f"activate took longer than {activate_timeout:.0f} s"
    if isinstance(exc, AgentLoadError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
