"""Mechanic benchmark: request → pull request with an instant scripted model, per stage, and
in the same run the bare Aider command on the same files.

    .venv/bin/python bench/mechanic.py [--runs 3]

Two paths: the pipeline alone (`mechanic.job.run_job`), and the whole chat path — the
request posted to `/webhooks/telegram` of the real server, the job queued and run by its
worker, progress and the final [Deploy] [Abort] [View PR] message delivered through the
outbox to a local fake Bot API (paced at one message a second per chat, as Telegram asks).

Persais's own overhead is the whole job minus the time Aider itself ran. Targets: overhead
≤ 3 s, whole job ≤ 2 x the bare Aider run.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.forge.local import LocalForge  # noqa: E402
from app.forge.lock import repository_lock  # noqa: E402
from app.runtime import Runtime  # noqa: E402
from app.settings import load_settings  # noqa: E402
from mechanic.aider import AiderModel, run_aider  # noqa: E402
from mechanic.job import JobDeps, run_job  # noqa: E402
from mechanic.llm import ChatModel  # noqa: E402
from mechanic.scaffold import Example, ScaffoldRequest, render, write  # noqa: E402
from mechanic.workspace import Workspace  # noqa: E402
from tests.support.git_repos import home_repository  # noqa: E402
from tests.support.mechanic import PLAN, REQUEST, echo_reply  # noqa: E402
from tests.support.scripted_llm import scripted_llm  # noqa: E402


async def one_job(
    settings, conninfo: str, source: Path, base: str, job_id: str
) -> dict[str, float]:  # type: ignore[no-untyped-def]
    marks: list[tuple[str, float]] = []

    async def progress(stage: str) -> None:
        marks.append((stage, time.perf_counter()))

    runtime = Runtime(settings, conninfo)
    await runtime.start(worker=False)
    aider = settings.resolved_aider_bin()
    try:
        deps = JobDeps(
            forge=LocalForge(runtime.pool, settings.home, source),
            model=ChatModel(base, "sk-bench", "scripted"),
            aider_bin=aider, aider_model=AiderModel("openai/scripted", base, "sk-bench"),
            templates=ROOT / "templates", jobs_root=settings.home / "jobs",
            lock=repository_lock(runtime.pool, "persais"), progress=progress,
        )  # fmt: skip
        start = time.perf_counter()
        outcome = await run_job(job_id, REQUEST, deps)
        end = time.perf_counter()
    finally:
        await runtime.stop()
    assert outcome.status == "opened", outcome.message
    stages = {}
    points = [*marks, ("end", end)]
    for (name, at), (_, nxt) in itertools.pairwise(points):
        stages[name] = round(nxt - at, 3)
    aider_seconds = sum(r.seconds for r in outcome.aider_runs)
    total = end - start
    per_stage = {f"stage:{k}": v for k, v in stages.items()}
    return {"total_s": round(total, 3), "aider_s": round(aider_seconds, 3),
            "overhead_s": round(total - aider_seconds, 3), **per_stage}  # fmt: skip


async def bare_aider(settings, source: Path, base: str, job_id: str) -> float:  # type: ignore[no-untyped-def]
    """The same Aider call on the same scaffolded files, with nothing around it."""
    work = settings.home / "bare"
    workspace = await Workspace.create(source, work, job_id=job_id, slug="echo")
    request = ScaffoldRequest(
        "agent", "echo", "echo", "Repeats", examples=[Example("Hello", "Echo: Hello")]
    )
    write(workspace.path, render(ROOT / "templates", request))
    run = await run_aider(
        settings.resolved_aider_bin(), AiderModel("openai/scripted", base, "sk-bench"),
        workspace.path, work / job_id, "Implement the echo agent.",
        ["dynamic/agents/echo/agent.py", "dynamic/agents/echo/agent.toml",
         "tests/dynamic/test_echo.py"],
        read_only=[ROOT / "templates" / "README.md"],
    )  # fmt: skip
    await workspace.remove(keep_branch=False)
    return run.seconds


def through_chat(settings, conninfo: str, base: str) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Webhook in → buttons out, against the real server and the fake Bot API."""
    import psycopg

    from tests.support.config import make_settings
    from tests.support.fake_telegram import fake_telegram
    from tests.support.server import client_for, running_server
    from tests.support.webhooks import TELEGRAM_TOKEN, post_telegram

    update = {
        "update_id": int(time.time() * 1000) % 2**31,
        "message": {
            "message_id": 1, "date": int(time.time()),
            "from": {"id": 42, "is_bot": False, "first_name": "Ada"},
            "chat": {"id": 42, "type": "private"}, "text": "/mechanic " + REQUEST,
        },
    }  # fmt: skip
    bot_id = int(TELEGRAM_TOKEN.split(":")[0])
    with fake_telegram(bot_id) as (tg_url, fake):
        chat_settings = make_settings(
            settings.home, conninfo, TELEGRAM_API_URL=tg_url, PERSAIS_TELEGRAM_ALLOWED_USERS="42",
            LLM_API_BASE=base, LLM_API_KEY="sk-bench", LLM_MODEL="scripted",
            PERSAIS_LOG_LEVEL="WARNING",
        )  # fmt: skip
        with running_server(chat_settings, conninfo) as (url, _), client_for(url) as client:
            time.sleep(2)  # let the worker warm up (conversations, aiogram), as in service
            start = time.perf_counter()
            assert post_telegram(client, update).status_code == 200
            first_reply = None
            while True:
                sent = [c for c in fake.calls if c.method == "sendMessage"]
                if sent and first_reply is None:
                    first_reply = sent[0].at
                done = [c for c in sent if c.params.get("reply_markup")]
                if done:
                    end = done[0].at
                    break
                if time.perf_counter() - start > 300:
                    raise TimeoutError("no pull request buttons within 300 s")
                time.sleep(0.02)
    with psycopg.connect(conninfo) as conn:
        row = conn.execute(
            "SELECT aider_seconds, status FROM jobs ORDER BY created_at DESC LIMIT 1"
        ).fetchone()
    if row is None or row[1] != "opened":
        raise RuntimeError(f"the chat job did not open a pull request: {row}")
    total = end - start
    return {"total_s": round(total, 3), "aider_s": round(float(row[0]), 3),
            "overhead_s": round(total - float(row[0]), 3),
            "first_reply_s": round((first_reply or end) - start, 3)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    opts = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="persais-mechanic-bench-"))
    source = home_repository(work / "home-repo")
    settings = load_settings(None, PERSAIS_HOME=str(work / "home"), PERSAIS_LOG_LEVEL="WARNING")
    from app.db.database import connect, migrate_to_latest

    db = connect(settings)
    migrate_to_latest(db)
    jobs, bare, chats = [], [], []
    try:
        for n in range(opts.runs):
            replies = [
                json.dumps(PLAN),
                echo_reply('f"Echo: {message.text}"'),
                echo_reply('f"Echo: {message.text}"'),
            ]
            with scripted_llm(replies) as (base, _):
                jobs.append(asyncio.run(one_job(settings, db.conninfo, source, base, f"b{n}")))
            with scripted_llm([echo_reply('f"Echo: {message.text}"')]) as (base, _):
                bare.append(asyncio.run(bare_aider(settings, source, base, f"a{n}")))
            with scripted_llm(replies) as (base, _):
                chats.append(through_chat(settings, db.conninfo, base))
    finally:
        db.release()
    median = {key: round(statistics.median(j[key] for j in jobs), 3) for key in jobs[0]}
    chat = {key: round(statistics.median(c[key] for c in chats), 3) for key in chats[0]}
    bare_s = round(statistics.median(bare), 3)
    print(json.dumps({
        "runs": opts.runs, "job_median": median, "chat_median": chat,
        "bare_aider_median_s": bare_s,
        "job_over_bare": round(median["total_s"] / bare_s, 2),
        "chat_over_bare": round(chat["total_s"] / bare_s, 2),
        "jobs": jobs, "chats": chats, "bare_aider_s": bare,
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
