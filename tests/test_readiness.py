"""`/ready` means ready (issue 17, defect 4), and each process imports only what it uses
(defect 5): the worker's warm-up imports LangGraph and aiogram off the event loop and
finishes before `/ready` turns 200; the web-only process never imports them; aiogram's
types are built on first use. Timings live in bench/ingest.py, never here."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from app.warm_up import WarmUp
from tests.support.agents import write_agent
from tests.support.processes import free_port, persais, persais_env

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("langgraph", "langchain_core", "aiogram", "githubkit")


def run_python(code: str, **env: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**persais_env(Path("/nonexistent")), **env},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.slow
def test_ready_waits_for_the_warm_up_and_a_broken_agent_does_not_hold_it(tmp_path: Path) -> None:
    agents = tmp_path / "agents"
    write_agent(agents, "echo")
    write_agent(agents, "broken", "raise RuntimeError('boom at import')\n")
    port = free_port()
    env = persais_env(
        tmp_path / "home", PERSAIS_AGENTS_DIR=str(agents), TELEGRAM_API_URL="http://127.0.0.1:9"
    )
    answers: list[tuple[int, dict]] = []  # type: ignore[type-arg]
    with persais(["serve", "--port", str(port)], env, tmp_path, tmp_path / "serve.log") as serve:
        deadline = time.monotonic() + 120
        while not answers or answers[-1][0] != 200:
            assert serve.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, answers[-1:]
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/ready", timeout=30)
                answers.append((response.status_code, response.json()))
            except httpx.TransportError:
                time.sleep(0.05)
    waiting = [report["warm-up"] for status, report in answers if status == 503]
    # The imports take seconds: /ready answered meanwhile, and said it was warming up.
    assert any(w["note"] in ("importing", "starting") for w in waiting), answers[:3]
    assert all(not w["finished"] for w in waiting)
    report = answers[-1][1]
    assert report["warm-up"]["finished"], report
    assert report["warm-up"]["ok"], report
    assert report["warm-up"]["modules"] == ["app.conversations", "app.telegram.channel"]
    assert "echo" in {agent["name"] for agent in report["agents"]["loaded"]}
    assert [q["name"] for q in report["agents"]["quarantined"]] == ["broken"]


def test_a_failed_warm_up_finishes_and_says_so() -> None:
    # The process must serve all the same: /ready waits for `finished`, not for `ok`.
    async def start() -> None:
        raise RuntimeError("the agent set did not start")

    warm_up = WarmUp()
    assert warm_up.summary() == {
        "finished": False, "ok": False, "note": "not begun", "modules": []
    }  # fmt: skip
    asyncio.run(warm_up.run(["json"], start))
    summary = warm_up.summary()
    assert summary["finished"] is True
    assert summary["ok"] is False
    assert summary["error"] == "RuntimeError: the agent set did not start"
    assert summary["modules"] == ["json"]


SERVE_WEB_ONLY = """
import json, sys
from starlette.testclient import TestClient
from app.runtime import Runtime
from app.settings import load_settings
from app.web.server import create_app
from app.web.signature import github_signature
from tests.support.webhooks import GITHUB_SECRET, TELEGRAM_SECRET
settings = load_settings()
app = create_app(Runtime(settings, settings.database_url.get_secret_value()),
                 database_kind="external", with_worker=False)
body = json.dumps({"zen": "Keep it logically awesome."}).encode()
with TestClient(app) as client:
    ready = client.get("/ready").json()
    answer = client.post("/webhooks/github", content=body, headers={
        "Content-Type": "application/json", "X-GitHub-Event": "ping",
        "X-GitHub-Delivery": "web-only-1",
        "X-Hub-Signature-256": github_signature(GITHUB_SECRET.encode(), body)})
    telegram = client.post("/webhooks/telegram", json={"update_id": 7, "message": {
        "message_id": 1, "date": 1, "chat": {"id": 1, "type": "private"}, "text": "hi"}},
        headers={"X-Telegram-Bot-Api-Secret-Token": TELEGRAM_SECRET})
print(json.dumps({"ready": ready, "answers": [answer.status_code, telegram.status_code],
                  "modules": sorted({m.split(".")[0] for m in sys.modules})}))
"""


def test_the_web_only_process_serves_without_langgraph_aiogram_or_githubkit(
    database: str,
) -> None:
    out = json.loads(run_python(SERVE_WEB_ONLY, DATABASE_URL=database))
    assert out["answers"] == [202, 200]  # GitHub: Accepted; Telegram wants a 200
    assert out["ready"]["ready"] is True
    assert "warm-up" not in out["ready"]  # nothing to warm up
    assert not set(HEAVY) & set(out["modules"])
    assert "pydantic" in out["modules"]  # the census is real: the settings' library is in


def test_aiogram_types_and_methods_are_built_on_first_use() -> None:
    names = ("Update", "Message", "Sticker", "SendMessage", "SetWebhook")
    code = (
        "import json\n"
        "import app.telegram.channel\n"
        "from app.telegram import lean_types\n"
        "from aiogram.methods import SetWebhook\n"
        "from aiogram.types import Update\n"
        f"names = {names!r}\n"
        "before = [lean_types.deferred(n) for n in names]\n"
        "built = lean_types.build()\n"
        "update = Update.model_validate({'update_id': 1, 'message': {'message_id': 1,"
        " 'date': 1, 'chat': {'id': 5, 'type': 'private'}, 'text': '/echo hi',"
        " 'from': {'id': 2, 'is_bot': False, 'first_name': 'Ada'}}})\n"
        "after = [lean_types.deferred(n) for n in names]\n"
        "hook = SetWebhook(url='https://example.org/hook', secret_token='s').model_dump()\n"
        "print(json.dumps([before, built, after, update.message.from_user.first_name,"
        " update.message.chat.id, hook['url'], lean_types.deferred('SetWebhook')]))\n"
    )
    before, built, after, name, chat, url, webhook_deferred = json.loads(run_python(code))
    assert before == [True] * 5  # importing aiogram built none of them
    assert built == ["Update", "SendMessage", "EditMessageText", "AnswerCallbackQuery"]
    # Update's validator holds the types it reaches; Sticker is still unbuilt on its own.
    assert after == [False, True, True, False, True]
    assert (name, chat) == ("Ada", 5)
    assert (url, webhook_deferred) == ("https://example.org/hook", False)  # built on use
