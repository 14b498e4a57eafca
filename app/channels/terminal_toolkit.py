"""The prompt_toolkit line editor of `persais chat` (imported only on a terminal).

`patch_stdout` makes everything written to `out` appear above the prompt, which is then
drawn again below it, with what was being typed kept. The open buttons are completions
("1" shown as "[1] Ship it"): Down on an empty line opens the menu with the first one
selected, the arrows move through it, Enter presses the one shown.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TextIO

from prompt_toolkit import PromptSession
from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document
from prompt_toolkit.filters import Condition
from prompt_toolkit.history import FileHistory
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
from prompt_toolkit.patch_stdout import patch_stdout

from app.channels.terminal_lines import Choices, Interrupted


class _Buttons(Completer):
    """The open buttons, offered while the line is empty or a number being typed."""

    def __init__(self, choices: Choices) -> None:
        self.choices = choices

    def get_completions(
        self, document: Document, complete_event: CompleteEvent
    ) -> Iterable[Completion]:
        typed = document.text_before_cursor
        if typed and not typed.isdigit():
            return
        for number, label in self.choices():
            if number.startswith(typed):
                yield Completion(number, -len(typed), display=f"[{number}] {label}")


class ToolkitReader:
    prompt: str | None = None  # drawn by prompt_toolkit

    def __init__(self, history: Path, choices: Choices) -> None:
        self.choices = choices
        self.out: TextIO = sys.stdout
        keys = KeyBindings()
        session: PromptSession[str] | None = None

        @Condition
        def menu_closed_on_empty_line() -> bool:
            buffer = session.default_buffer if session else None
            return bool(
                buffer is not None
                and not buffer.text
                and buffer.complete_state is None
                and any(True for _ in self.choices())
            )

        @keys.add("down", filter=menu_closed_on_empty_line)
        def _open_buttons(event: KeyPressEvent) -> None:
            event.current_buffer.start_completion(select_first=True)

        session = PromptSession(
            history=FileHistory(str(history)),
            completer=_Buttons(choices),
            complete_while_typing=False,
            key_bindings=keys,
        )
        self.session = session

    @contextlib.contextmanager
    def patched(self) -> Iterator[None]:
        with patch_stdout(raw=True):
            self.out = sys.stdout  # the proxy: lines land above the prompt
            try:
                yield
            finally:
                self.out = sys.__stdout__ or sys.stdout

    async def read(self) -> str:
        try:
            return await self.session.prompt_async("> ") + "\n"
        except EOFError:
            return ""
        except KeyboardInterrupt:
            raise Interrupted from None
