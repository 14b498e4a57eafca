"""docs/first-evolution.md works as written: its `persais chat` sessions (the blocks marked
`<!-- walkthrough -->`) are replayed in order on a fresh home with nothing configured, and
every line the page shows appears in the real output, in order. Ids, shas and times are
compared as shapes. A step seen while it runs (`⏳ stage`, or a deploy's `🚀 …: step…`) is
one version of a message edited in place, which the chat's poll may or may not catch. The
chat's "Waiting for …" (said when input ends) must show, but where it falls among the
progress lines depends on how soon the worker moves: it is not held to its place."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.settings import CHECKOUT_ROOT

pytestmark = pytest.mark.slow
PAGE = CHECKOUT_ROOT / "docs" / "first-evolution.md"
SHAPES = [
    (re.compile(r"\b\d{4}-\d{2}-\d{2} \d{2}:\d{2}(:\d{2})? UTC\b"), "<time>"),
    (re.compile(r"\b[0-9a-f]{12}\b"), "<sha>"),
    (re.compile(r"\b[0-9a-f]{8}\b"), "<job>"),
]


@dataclass
class Session:
    args: list[str]
    typed: list[str]
    shown: list[str]


def sessions(page: str) -> list[Session]:
    found = []
    for block in re.findall(r"<!-- walkthrough -->\n```console\n(.*?)```", page, re.S):
        command, *lines = block.splitlines()
        args = shlex.split(command.removeprefix("$ "))
        assert args[0] == ".venv/bin/persais", command
        typed = [line[2:] for line in lines if line.startswith("> ")]
        shown = [line for line in lines if not line.startswith("> ") and not passing(line)]
        found.append(Session(args[1:], typed, shown))
    return found


def passing(line: str) -> bool:
    """A version of a progress message that a later version replaces."""
    step = line.startswith("🚀") and re.search(r": \w+…$", line) is not None
    return line.startswith("⏳") or step


def shape(line: str) -> str:
    for pattern, name in SHAPES:
        line = pattern.sub(name, line)
    return line.rstrip()


def test_the_page_has_the_three_sessions() -> None:
    found = sessions(PAGE.read_text())
    assert [s.typed for s in found] == [
        ["/mechanic Create an agent Echo that repeats my messages", "1"],
        ["1"],
        ["/echo Hello", "/releases"],
    ]


def test_the_walkthrough_works_as_written(tmp_path: Path) -> None:
    keep = {"PATH", "HOME", "LANG", "LC_ALL", "TMPDIR"}
    env = {k: v for k, v in os.environ.items() if k in keep}
    env["PERSAIS_HOME"] = str(tmp_path / ".persais")  # nothing else: the embedded default
    for number, session in enumerate(sessions(PAGE.read_text()), 1):
        done = subprocess.run(
            [sys.executable, "-m", "app", *session.args], input="\n".join(session.typed) + "\n",
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        actual = [shape(re.sub(r"^(> )+", "", line)) for line in done.stdout.splitlines()]
        at = 0
        for line in map(shape, session.shown):
            if line.startswith("Waiting for "):
                assert line in actual, f"session {number}: {line!r} not shown"
                continue
            try:
                at = actual.index(line, at) + 1
            except ValueError:
                pytest.fail(f"session {number}: {line!r} not shown (in order); got:\n"
                            + done.stdout)  # fmt: skip
