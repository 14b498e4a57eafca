"""What a line reader of `persais chat` is, shared by the readers (`terminal_input`) and the
prompt_toolkit one (`terminal_toolkit`) without either importing the other."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol, TextIO

Choices = Callable[[], Iterable[tuple[str, str]]]  # the open buttons: (number, label)


class Interrupted(Exception):
    """Ctrl-C at the prompt: the person wants out."""


class LineReader(Protocol):
    out: TextIO  # write here what should appear above the prompt
    prompt: str | None  # for the chat to print before reading; None: the reader draws it

    async def read(self) -> str:
        """The next line ("" at the end of input); raises Interrupted on Ctrl-C."""
        ...
