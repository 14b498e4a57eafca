"""Run the pinned aider-chat as a subprocess, on our terms.

Aider is never imported: it runs from its own virtualenv (`AIDER_BIN`) with flags we pin.
What the worktree could use to redirect it is shut off: our own `--config` (so no
`.aider.conf.yml` is read), our own `--env-file` (so no `.env`), a clean environment with a
temporary HOME (so no `~/.aider.conf.yml`, no stray `AIDER_*`/`OPENAI_*` variables), and
history files kept outside the worktree. The API key travels in the environment, never on
the command line. A timeout or a cancellation kills Aider's whole process group. Its exit
code is recorded but not trusted: success is what validation says. Each run is metered
(`mechanic.metering`): a spent budget refuses it before it starts, and each model call Aider
reports in its output ("Tokens: … sent, … received. Cost: …") is told to the meter after it.

Aider writes whatever paths the model names, including `../../somewhere` outside the
worktree (it only fails afterwards, at `git add`). So where bubblewrap (`bwrap`) is
available, Aider runs in a mount namespace where the whole filesystem is read-only except
the worktree and the job's own folder, with a private /tmp; and it runs with `--no-git`, so
it needs no write access to the repository's metadata either. Without bwrap the run is
marked unsandboxed and `persais doctor` says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mechanic import metering
from mechanic.metering import Usage
from mechanic.sandbox import aider_profile, kill_group, search_path

# Our settings file: Aider refuses an empty one, and these are the defaults we want anyway.
_CONFIG = """\
check-update: false
analytics-disable: true
show-release-notes: false
auto-commits: false
dirty-commits: false
gitignore: false
auto-lint: false
auto-test: false
suggest-shell-commands: false
"""
# Aider's report after each model call (aider/coders/base_coder.py, show_usage_report):
# "Tokens: 2.1k sent, 300 received. Cost: $0.01 message, $0.03 session." with ", 1.0k cache
# write" and ", 12k cache hit" after "sent" when the provider said so, the Cost part on the
# next line when both are there, and no Cost part at all when Aider knows no price for the
# model. Counts are rounded (format_tokens: "2.1k", "12k").
_TOKENS = re.compile(
    r"Tokens: ([\d.]+)(k?) sent(?:, [\d.]+k? cache (?:write|hit))*, ([\d.]+)(k?) received\."
    r"(?:\s*Cost: \$([\d.]+) message)?"
)


@dataclass(frozen=True)
class AiderModel:
    name: str  # as Aider names it: "openai/<model>" for any OpenAI-compatible endpoint
    api_base: str
    api_key: str


@dataclass(frozen=True)
class AiderRun:
    exit_code: int | None  # None: killed (timeout or cancellation)
    timed_out: bool
    seconds: float
    transcript: str  # Aider's console output
    llm_log: str  # what went to and came from the model
    tokens_sent: int
    tokens_received: int
    cost: float
    sandboxed: bool = False


class AiderNotFound(RuntimeError):
    pass


def _count(number: str, kilo: str) -> int:
    return int(float(number) * (1000 if kilo else 1))


def calls(transcript: str, model: str) -> list[Usage]:
    """Each model call Aider reported, in order; a call it gave no price for has no cost."""
    found = []
    for m in _TOKENS.finditer(transcript):
        cost = float(m.group(5)) if m.group(5) is not None else None
        sent, received = _count(m.group(1), m.group(2)), _count(m.group(3), m.group(4))
        found.append(Usage(model, sent, received, cost, source="aider"))
    return found


def parse_usage(transcript: str) -> tuple[int, int, float]:
    """Tokens sent and received over the whole run, and the cost Aider priced (0 if none)."""
    used = calls(transcript, "")
    return (
        sum(u.prompt_tokens or 0 for u in used),
        sum(u.completion_tokens or 0 for u in used),
        sum(u.cost_usd or 0.0 for u in used),
    )


def command(
    aider: Path, model: AiderModel, job_dir: Path, message: Path, files: Sequence[str],
    read_only: Sequence[Path] = (),
) -> list[str]:  # fmt: skip
    """The full Aider command line (no secrets in it)."""
    args = [
        str(aider),
        "--config", str(job_dir / "aider.conf.yml"),
        "--env-file", str(job_dir / "aider.env"),
        "--model", model.name,
        "--openai-api-base", model.api_base,
        "--message-file", str(message),
        "--yes-always",
        "--no-auto-commits",
        "--no-check-update",
        "--analytics-disable",
        "--no-show-release-notes",
        "--no-gitignore",
        "--no-auto-lint",
        "--no-auto-test",
        "--no-suggest-shell-commands",
        "--no-show-model-warnings",
        "--edit-format", "whole",
        "--no-stream",
        "--no-pretty",
        "--no-fancy-input",
        "--map-tokens", "0",
        "--no-git",
        "--chat-history-file", str(job_dir / "chat.md"),
        "--input-history-file", str(job_dir / "input.history"),
        "--llm-history-file", str(job_dir / "llm.log"),
    ]  # fmt: skip
    for path in read_only:
        args += ["--read", str(path)]
    return [*args, "--", *files]


async def run_aider(
    aider: Path,
    model: AiderModel,
    worktree: Path,
    job_dir: Path,
    instructions: str,
    files: Sequence[str],
    *,
    read_only: Sequence[Path] = (),
    time_limit: float = 300.0,
) -> AiderRun:
    await metering.before()  # a spent budget stops the job before this round
    if not aider.is_file():
        raise AiderNotFound(f"no Aider at {aider}; run `python3 bootstrap.py setup`")
    job_dir.mkdir(parents=True, exist_ok=True)
    home = job_dir / "home"
    home.mkdir(exist_ok=True)
    scratch = job_dir / "tmp"
    scratch.mkdir(exist_ok=True)
    (job_dir / "aider.conf.yml").write_text(_CONFIG)
    (job_dir / "aider.env").write_text("")
    message = job_dir / "message.md"
    message.write_text(instructions)
    env = {
        "PATH": search_path(aider.parent),
        "HOME": str(home),
        "TMPDIR": str(scratch),
        "LANG": "C.UTF-8",
        "OPENAI_API_KEY": model.api_key,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no download of litellm's price list
        "GIT_AUTHOR_NAME": "Persais Mechanic",
        "GIT_AUTHOR_EMAIL": "mechanic@persais.invalid",
        "GIT_COMMITTER_NAME": "Persais Mechanic",
        "GIT_COMMITTER_EMAIL": "mechanic@persais.invalid",
    }
    jail = aider_profile(worktree, job_dir)
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *jail,
        *command(aider, model, job_dir, message, files, read_only),
        cwd=worktree,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,  # its own process group, so we can end all of it
    )
    timed_out = False
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), time_limit)
    except TimeoutError:
        timed_out = True
        kill_group(proc.pid)
        out, _ = await proc.communicate()
    except asyncio.CancelledError:
        kill_group(proc.pid)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(proc.wait(), 5)
        raise
    transcript = (out or b"").decode(errors="replace")
    llm_log = job_dir / "llm.log"
    sent, received, cost = parse_usage(transcript)
    for used in calls(transcript, model.name):
        await metering.after(used)
    return AiderRun(
        exit_code=None if timed_out else proc.returncode,
        timed_out=timed_out,
        seconds=time.monotonic() - started,
        transcript=_redact(transcript, model.api_key),
        llm_log=llm_log.read_text(errors="replace") if llm_log.exists() else "",
        tokens_sent=sent,
        tokens_received=received,
        cost=cost,
        sandboxed=bool(jail),
    )


def _redact(text: str, secret: str) -> str:
    return text.replace(secret, "[redacted]") if len(secret) >= 8 else text
