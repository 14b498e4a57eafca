"""`persais chat` at a keyboard: what the line editor costs — start to the first prompt, and
Enter to the answer — with prompt_toolkit, with the readline fallback, and piped.

    .venv/bin/python bench/terminal_chat.py [--runs 5]

Each run starts `persais chat` in a real pseudo-terminal (tests/support/terminal.py) on one
home with its embedded Postgres (a first, untimed run does initdb), waits for the prompt,
types `/echo hi`, then `hello` + Enter, and stops the clock at `Echo: hello`. The readline
case hides prompt_toolkit from the process (sys.modules), as on a machine without it. The
piped case is a pipe, not a terminal: "> " printed by the chat.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.agents import write_agent  # noqa: E402
from tests.support.processes import persais_env  # noqa: E402
from tests.support.terminal import Terminal  # noqa: E402

CASES = {
    "prompt_toolkit": ["-m", "app"],
    "readline": ["-c", "import sys; sys.modules['prompt_toolkit'] = None; "
                 "from app.cli import main; main()"],
}  # fmt: skip


def on_terminal(env: dict[str, str], python: list[str]) -> tuple[float, float]:
    started = time.monotonic()
    term = Terminal([sys.executable, *python, "chat", "--name", "bench"], env, cwd=str(ROOT))
    try:
        at = term.expect(">", after=term.expect("Ctrl-D leaves.", 120), timeout=120)
        to_prompt = time.monotonic() - started
        term.type("/echo", "enter")
        at = term.expect(">", after=term.expect("You are now talking to echo", after=at))
        term.type("hello")
        time.sleep(0.2)
        typed = time.monotonic()
        os.write(term.master, b"\r")  # not type(): it waits after each key
        at = term.expect("Echo: hello", after=at, timeout=60)
        answer = time.monotonic() - typed
        term.expect(">", after=at)
        term.type("ctrl-d")
        term.wait(60)
        return to_prompt, answer
    finally:
        term.close()


def piped(env: dict[str, str]) -> tuple[float, float]:
    """Piped: the whole run, since a pipe has no prompt to wait for."""
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "app", "chat", "--name", "bench"],
        input="/echo\nhello\n", env=env, cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return time.monotonic() - started, float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5, help="runs of each case")
    runs = parser.parse_args().runs
    with tempfile.TemporaryDirectory(prefix="tty-bench-") as folder:
        agents = Path(folder) / "agents"
        write_agent(agents, "echo")
        env = persais_env(Path(folder) / "home", PERSAIS_AGENTS_DIR=str(agents))
        piped(env)  # initdb, warm caches
        for name, python in CASES.items():
            times = [on_terminal(env, python) for _ in range(runs)]
            starts = [t[0] * 1000 for t in times]
            answers = [t[1] * 1000 for t in times]
            print(
                f"{name:15} to prompt median {statistics.median(starts):6.0f} ms"
                f" ({min(starts):.0f}-{max(starts):.0f}); Enter to answer median"
                f" {statistics.median(answers):5.0f} ms ({min(answers):.0f}-{max(answers):.0f})"
            )
        whole = [piped(env)[0] * 1000 for _ in range(runs)]
        print(
            f"{'piped':15} whole run (start, /echo, hello, end) median"
            f" {statistics.median(whole):6.0f} ms ({min(whole):.0f}-{max(whole):.0f})"
        )


if __name__ == "__main__":
    main()
