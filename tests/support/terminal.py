"""A real pseudo-terminal around a real process: what a person at a keyboard sees and types.

The process gets the pty as its controlling terminal (so Ctrl-C is a SIGINT from the line
discipline, as at a keyboard). A thread collects everything it writes and answers the
cursor-position requests a terminal answers. `screen` is that output with the escape
sequences taken out, for assertions about the text shown. With TTY_DEBUG=<file> set, each
terminal appends its raw output there when closed (to see what prompt_toolkit drew).
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import termios
import threading
import time
from collections.abc import Sequence

ESCAPES = re.compile(
    r"\x1b\[[0-9;?<=>]*[ -/]*[@-~]|\x1b\][^\x07]*\x07|\x1b[()][0-9A-Za-z]|\x1b[=>78]"
)
KEYS = {"up": "\x1b[A", "down": "\x1b[B", "right": "\x1b[C", "left": "\x1b[D",
        "home": "\x01", "ctrl-c": "\x03", "ctrl-d": "\x04", "enter": "\r"}  # fmt: skip


def plain(raw: str) -> str:
    return ESCAPES.sub("", raw).replace("\r\n", "\n")


class Terminal:
    def __init__(self, argv: Sequence[str], env: dict[str, str], cwd: str | None = None) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        self.master = master
        self.proc = subprocess.Popen(
            list(argv), stdin=slave, stdout=slave, stderr=slave, cwd=cwd,
            env={"TERM": "xterm", **env}, start_new_session=True,
            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
        )  # fmt: skip
        os.close(slave)
        self.raw = ""
        self._lock = threading.Lock()
        threading.Thread(target=self._collect, daemon=True).start()

    def _collect(self) -> None:
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:  # the process is gone (EIO)
                return
            if not data:
                return
            text = data.decode(errors="replace")
            for _ in range(text.count("\x1b[6n")):  # where is the cursor? Somewhere.
                os.write(self.master, b"\x1b[1;1R")
            with self._lock:
                self.raw += text

    @property
    def screen(self) -> str:
        with self._lock:
            return plain(self.raw)

    def expect(self, text: str, timeout: float = 60, after: int = 0) -> int:
        """Wait until `text` is shown (past position `after`); return where it ends."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            at = self.screen.find(text, after)
            if at >= 0:
                return at + len(text)
            if self.proc.poll() is not None:
                time.sleep(0.2)  # the last output may still be in flight
                at = self.screen.find(text, after)
                if at >= 0:
                    return at + len(text)
                raise AssertionError(
                    f"exited {self.proc.returncode} before {text!r}:\n{self.screen}"
                )
            time.sleep(0.01)
        raise AssertionError(f"{text!r} not shown in {timeout}s:\n{self.screen}")

    def type(self, *keys: str) -> None:
        """Type text, or a named key from KEYS; each a moment after the last."""
        for key in keys:
            os.write(self.master, KEYS.get(key, key).encode())
            time.sleep(0.1)

    def wait(self, timeout: float = 60) -> int:
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running after {timeout}s:\n{self.screen}") from None
        time.sleep(0.2)
        return code

    def close(self) -> None:
        if os.environ.get("TTY_DEBUG"):
            with open(os.environ["TTY_DEBUG"], "a") as f:
                f.write(repr(self.raw) + "\n\n")
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        os.close(self.master)
