"""aiogram's ~450 Telegram types and ~170 Bot API methods, built when first used instead
of all at import.

aiogram declares its types with pydantic's `defer_build=True`, then undoes it: the end of
`aiogram/types/__init__.py` calls `model_rebuild(_types_namespace=...)` on every type, so
that their forward references (names imported only under `TYPE_CHECKING`) resolve. That
builds a validator and a serializer for each type, each with its own copy of the nested
ones: measured 4 to 6 s of CPU and ~130 MB of memory for a process that reads a handful of
them (`Update`, `Message`, `CallbackQuery`, what the Bot API answers).

While `aiogram.types` runs, this puts the names that call would have passed into each
type's module instead, and leaves the type unbuilt. Pydantic then builds a type the first
time it validates (resolving the same names through the module), and a build includes
only the types it reaches. The methods (`SendMessage`, ...) are not deferred by aiogram
at all; once `aiogram.methods.base` has run, their base class is told to defer too
(measured: importing aiogram costs 53 MB and 3.3 s with only the types deferred, 27 MB
and 1.1 s with both). The models Persais uses are built once, off the event loop,
by `build()` (the worker's warm-up); any other is built on its first use.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import ModuleType
from typing import Any

TYPES = "aiogram.types"
METHODS = "aiogram.methods.base"


class _Finder(importlib.abc.MetaPathFinder):
    """Finds `aiogram.types` and `aiogram.methods.base` as the other finders would, and
    runs them deferred."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in (TYPES, METHODS):
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec: importlib.machinery.ModuleSpec | None = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = _Loader(spec.loader)
                return spec
        return None


class _Loader(importlib.abc.Loader):
    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        module: ModuleType | None = self.inner.create_module(spec)
        return module

    def exec_module(self, module: ModuleType) -> None:
        if module.__name__ == METHODS:
            self.inner.exec_module(module)
            base = getattr(module, "TelegramMethod", None)  # gone in some later aiogram:
            if base is not None:  # then built at import, as aiogram does (and a test says)
                base.model_config["defer_build"] = True
            return
        with _rebuilds_deferred():
            self.inner.exec_module(module)

    def __getattr__(self, name: str) -> Any:  # get_source, is_package, ... (tracebacks)
        return getattr(self.inner, name)


@contextmanager
def _rebuilds_deferred() -> Iterator[None]:
    from pydantic import BaseModel

    original = BaseModel.__dict__["model_rebuild"]

    def model_rebuild(cls: type[BaseModel], **kwargs: Any) -> bool | None:
        namespace: Mapping[str, Any] | None = kwargs.get("_types_namespace")
        if set(kwargs) != {"_types_namespace"} or not cls.__module__.startswith(TYPES + "."):
            return original.__func__(cls, **kwargs)  # type: ignore[no-any-return]
        module = sys.modules[cls.__module__].__dict__
        for name, value in (namespace or {}).items():
            module.setdefault(name, value)  # what the build would have resolved names in
        return None

    BaseModel.model_rebuild = classmethod(model_rebuild)  # type: ignore[assignment,method-assign,arg-type]
    try:
        yield
    finally:
        BaseModel.model_rebuild = original  # type: ignore[method-assign]


def install() -> None:
    """Defer aiogram's type builds in this process, unless its types are imported already."""
    if TYPES not in sys.modules and not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())


# What Persais reads from Telegram and asks of it (app/telegram/): built by `build()`.
MODELS = (
    ("aiogram.types", "Update"),
    ("aiogram.methods", "SendMessage"),
    ("aiogram.methods", "EditMessageText"),
    ("aiogram.methods", "AnswerCallbackQuery"),
)


def build() -> list[str]:
    """Build the validators Persais uses now (in a thread, before the process is ready),
    so the first update does not pay for them on the event loop; the names built."""
    import importlib

    from aiogram.methods.base import Response

    built = []
    for module, name in MODELS:
        model = getattr(importlib.import_module(module), name)
        model.model_rebuild()
        built.append(name)
        returning = getattr(model, "__returning__", None)
        if returning is not None:  # how the Bot API's answer to it is read
            Response[returning].model_rebuild()  # type: ignore[valid-type]
    return built


def deferred(name: str) -> bool:
    """Whether this aiogram type or method is still unbuilt (the import was deferred)."""
    model = getattr(sys.modules.get(TYPES), name, None) or getattr(
        sys.modules.get("aiogram.methods"), name, None
    )
    return model is not None and not model.__pydantic_complete__
