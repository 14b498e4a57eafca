"""How `persais chat` reads a line, so a terminal feels like a terminal.

On a terminal the line is read with prompt_toolkit: editing, history kept in
`PERSAIS_HOME/chat_history` across sessions, the prompt redrawn below whatever a worker
says meanwhile (its output goes through `out`), and the open buttons offered as a menu:
Down on an empty line opens it, the arrows move, Enter presses. Without prompt_toolkit,
readline does the editing and history, and output clears the prompt line and redraws it.
Piped input (tests, scripts) is read plainly, line by line.

Ctrl-C at the prompt raises `Interrupted` (the chat leaves with one line); Ctrl-D is the
end of input (""). Lines are read on a daemon thread when not by prompt_toolkit, so a
Ctrl-C elsewhere never waits for Enter.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

from app.channels.terminal_lines import Choices, Interrupted, LineReader


@contextlib.contextmanager
def line_reader(history: Path, choices: Choices) -> Iterator[LineReader]:
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        yield PlainReader()
        return
    history.parent.mkdir(parents=True, exist_ok=True)
    history.touch(mode=0o600, exist_ok=True)  # what was typed is the person's: theirs alone
    try:
        import prompt_toolkit  # noqa: F401
    except ImportError:
        with _readline_reader(history) as reader:
            yield reader
        return
    with _toolkit_reader(history, choices) as toolkit:
        yield toolkit


async def _on_daemon_thread(read: Callable[[], str]) -> str:
    """`read()` on a thread that never holds the process open (a Ctrl-C leaves at once)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[str] = loop.create_future()

    def settle(line: str | None, error: BaseException | None) -> None:
        if done.done():  # the chat stopped waiting
            return
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(line or "")

    def work() -> None:
        try:
            line = read()
        except BaseException as exc:  # EOFError, KeyboardInterrupt: handed to the chat
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits
                loop.call_soon_threadsafe(settle, None, exc)
        else:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(settle, line, None)

    threading.Thread(target=work, name="chat input", daemon=True).start()
    return await done


class PlainReader:
    """Piped input: one line at a time, "> " printed by the chat."""

    prompt: str | None = "> "

    def __init__(self) -> None:
        self.out: TextIO = sys.stdout

    async def read(self) -> str:
        return await _on_daemon_thread(sys.stdin.readline)


@contextlib.contextmanager
def _toolkit_reader(history: Path, choices: Choices) -> Iterator[LineReader]:
    from app.channels.terminal_toolkit import ToolkitReader

    reader = ToolkitReader(history, choices)
    with reader.patched():
        yield reader


class _RedrawingOut:
    """stdout that clears the line being edited, writes, and draws the prompt again."""

    def __init__(self, reader: ReadlineReader, real: TextIO) -> None:
        self._reader = reader
        self._real = real

    def write(self, text: str) -> int:
        if self._reader.editing:
            import readline

            self._real.write("\r\x1b[K" + text)
            if text.endswith("\n"):
                self._real.write(self._reader.shown_prompt + readline.get_line_buffer())
        else:
            self._real.write(text)
        return len(text)

    def flush(self) -> None:
        self._real.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class ReadlineReader:
    """The fallback editor: readline's editing and history, output redrawn around it."""

    prompt: str | None = None
    shown_prompt = "> "

    def __init__(self, history: Path) -> None:
        self.history = history
        self.editing = False
        self.out: TextIO = _RedrawingOut(self, sys.stdout)  # type: ignore[assignment]

    async def read(self) -> str:
        self.editing = True
        try:
            return await _on_daemon_thread(lambda: input(self.shown_prompt) + "\n")
        except EOFError:
            return ""
        except KeyboardInterrupt:
            raise Interrupted from None
        finally:
            self.editing = False


@contextlib.contextmanager
def _readline_reader(history: Path) -> Iterator[LineReader]:
    import readline
    import termios

    with contextlib.suppress(OSError):
        readline.read_history_file(history)
    saved = termios.tcgetattr(sys.stdin.fileno())
    try:
        yield ReadlineReader(history)
    finally:
        # readline may be mid-line on its thread: give the terminal back as it was.
        termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, saved)
        with contextlib.suppress(OSError):
            readline.set_history_length(1000)
            readline.write_history_file(history)
