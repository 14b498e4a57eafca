"""`persais doctor` asks each configured service (fake GitHub, Bot API, Fly, the scripted
model), names each broken part on its own line, and runs on a half-done configuration."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.fake_fly import FLY_TOKEN, FakeFly, fake_fly
from tests.support.fake_github import APP_ID, FakeGitHub, app_key_pair, fake_github
from tests.support.fake_telegram import BOT_ID, FakeTelegram, fake_telegram
from tests.support.processes import free_port, persais_env
from tests.support.scripted_llm import ScriptedLLM, scripted_llm
from tests.support.webhooks import TELEGRAM_TOKEN

PRIVATE, PUBLIC = app_key_pair()


@dataclass
class Outside:
    env: dict[str, str]
    github: FakeGitHub
    telegram: FakeTelegram
    llm: ScriptedLLM
    fly: FakeFly


@dataclass
class Said:
    code: int
    lines: list[str]
    stderr: str

    def part(self, name: str) -> str:
        (line,) = [line for line in self.lines if line.split()[0] == name]
        return line

    def status(self, name: str) -> str:
        return self.part(name).split()[1]


@contextmanager
def outside(tmp_path: Path, database: str) -> Iterator[Outside]:
    """Every part configured, each against its fake."""
    key = tmp_path / "app.pem"
    key.write_text(PRIVATE)
    with ExitStack() as stack:
        gh_url, github = stack.enter_context(fake_github(PUBLIC))
        github.add_repo("ada/persais", files={"README.md": "hi\n"})
        tg_url, telegram = stack.enter_context(fake_telegram(BOT_ID))
        telegram.webhook = {"url": "https://persais.example/webhooks/telegram"}
        llm_url, llm = stack.enter_context(scripted_llm([]))
        fly_url, fly = stack.enter_context(fake_fly(app="persais-test", machines=2))
        env = persais_env(
            tmp_path / "home", database,
            GITHUB_APP_ID=str(APP_ID), GITHUB_PRIVATE_KEY_PATH=str(key), GITHUB_API_URL=gh_url,
            PERSAIS_HOME_REPO="ada/persais", TELEGRAM_API_URL=tg_url,
            PERSAIS_TELEGRAM_ALLOWED_USERS="42", LLM_API_BASE=llm_url, LLM_API_KEY="sk-test",
            LLM_MODEL="scripted/model", EMBEDDINGS_MODEL="scripted-embedding",
            FLY_API_URL=fly_url, FLY_API_TOKEN=FLY_TOKEN, FLY_APP_NAME="persais-test",
        )  # fmt: skip
        yield Outside(env, github, telegram, llm, fly)


def doctor(env: dict[str, str], cwd: Path, *flags: str) -> Said:
    done = subprocess.run(
        [sys.executable, "-m", "app", "doctor", *flags],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    return Said(done.returncode, [x for x in done.stdout.splitlines() if x.strip()], done.stderr)


def test_every_configured_part_is_asked_and_answers(tmp_path: Path, database: str) -> None:
    with outside(tmp_path, database) as out:
        said = doctor(out.env, tmp_path)
        assert out.github.calls_to("/app/installations"), "the installations were not asked"
        assert [c.method for c in out.telegram.calls] == ["getMe", "getWebhookInfo"]
        (asked,) = out.llm.requests
        assert (asked["model"], asked["max_tokens"]) == ("scripted/model", 1)
        assert out.llm.embedding_requests[0]["model"] == "scripted-embedding"
    for name in ("github", "telegram", "model", "embeddings", "fly", "database", "settings"):
        assert said.status(name) == "ok", said.part(name)
    assert said.code == 0, said.lines
    assert "installed on ada" in said.part("github")
    assert "@persais_bot" in said.part("telegram")
    assert "webhook https://persais.example/webhooks/telegram" in said.part("telegram")
    assert "Connection refused" in said.part("telegram")  # an old error, shown, not a fault
    assert "2 machine(s), 2 started" in said.part("fly")
    assert "dimensions" in said.part("embeddings")
    everything = "\n".join(said.lines) + said.stderr
    for secret in ("sk-test", FLY_TOKEN, TELEGRAM_TOKEN.split(":")[1], "PRIVATE KEY"):
        assert secret not in everything


def test_made_up_credentials_and_closed_ports_are_broken(tmp_path: Path, database: str) -> None:
    other_key = tmp_path / "other.pem"
    other_key.write_text(app_key_pair()[0])
    with outside(tmp_path, database) as out:
        out.env.update(
            GITHUB_PRIVATE_KEY_PATH=str(other_key),  # parses, but is not the App's
            TELEGRAM_BOT_TOKEN="987654321:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw0",
            LLM_API_BASE=f"http://127.0.0.1:{free_port()}/v1",  # nothing listens
            EMBEDDINGS_API_BASE=f"http://127.0.0.1:{free_port()}/v1",
            FLY_API_TOKEN="fo1_made_up",
        )
        said = doctor(out.env, tmp_path)
    assert said.code == 1
    broken = {line.split()[0] for line in said.lines if line.split()[1] == "broken"}
    assert broken == {"github", "telegram", "model", "embeddings", "fly"}, said.lines
    assert "answered 401" in said.part("github")
    assert "refuses the token (401" in said.part("telegram")
    assert "cannot be reached (ConnectError)" in said.part("model")
    assert "answered 401" in said.part("fly")
    assert "fo1_made_up" not in "\n".join(said.lines)


def test_a_service_that_does_not_answer_is_broken_within_the_timeout(
    tmp_path: Path, database: str
) -> None:
    with outside(tmp_path, database) as out:
        out.llm.delay = 30
        said = doctor(out.env, tmp_path, "--timeout", "1")
    assert said.status("model") == "broken"
    assert "did not answer within 1 s" in said.part("model")
    assert said.status("github") == "ok"
    assert said.code == 1


def test_a_half_done_configuration_lists_every_bad_variable_and_checks_the_rest(
    tmp_path: Path, database: str
) -> None:
    with outside(tmp_path, database) as out:
        out.env.update(
            TELEGRAM_BOT_TOKEN="made-up",
            PERSAIS_WORKER_CONCURRENCY="many",
            LLM_API_BASE="ftp://models.example",
        )
        out.env.pop("FLY_APP_NAME")
        said = doctor(out.env, tmp_path)
        assert not out.llm.requests, "a model whose address is bad was asked anyway"
        assert not out.telegram.calls
    settings = [line for line in said.lines if line.startswith("settings")]
    assert len(settings) == 4, settings
    assert all(line.split()[1] == "broken" for line in settings)
    for variable in ("TELEGRAM_BOT_TOKEN", "PERSAIS_WORKER_CONCURRENCY", "LLM_API_BASE"):
        assert any(line.split()[2] == f"{variable}:" for line in settings), variable
    assert any("FLY_APP_NAME: required when FLY_API_TOKEN is set" in x for x in settings)
    assert "made-up" not in "\n".join(said.lines)
    for part in ("telegram", "model", "fly"):
        assert said.status(part) == "broken", said.part(part)
    assert "not checked: see the settings lines above" in said.part("fly")
    assert "FLY_API_TOKEN" in said.part("fly")
    assert said.status("github") == "ok"  # the rest is still asked
    assert said.status("database") == "ok"
    assert said.code == 1


def test_offline_asks_nobody(tmp_path: Path, database: str) -> None:
    with outside(tmp_path, database) as out:
        out.env["TELEGRAM_BOT_TOKEN"] = "987654321:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw0"
        said = doctor(out.env, tmp_path, "--offline")
        assert not out.telegram.calls
        assert not out.llm.requests
        assert not out.github.calls_to("/app")
    assert said.status("telegram") == "ok"  # offline cannot tell a made-up token
    assert said.code == 0, said.lines


def test_telegram_that_cannot_reach_the_webhook_now_is_broken(
    tmp_path: Path, database: str
) -> None:
    with outside(tmp_path, database) as out:
        out.telegram.last_error = (int(time.time()) - 30, "Wrong response from the webhook: 502")
        said = doctor(out.env, tmp_path)
    assert said.status("telegram") == "broken"
    assert "Wrong response from the webhook: 502" in said.part("telegram")
    assert said.code == 1


def test_a_webhook_without_its_secret_is_broken(tmp_path: Path, database: str) -> None:
    with outside(tmp_path, database) as out:
        out.env.pop("TELEGRAM_WEBHOOK_SECRET")
        said = doctor(out.env, tmp_path)
    assert said.status("telegram") == "broken"
    assert "TELEGRAM_WEBHOOK_SECRET" in said.part("telegram")


def test_polling_needs_no_webhook_secret_and_no_webhook(tmp_path: Path, database: str) -> None:
    with outside(tmp_path, database) as out:
        out.telegram.webhook = {}
        out.env.pop("TELEGRAM_WEBHOOK_SECRET")
        out.env.pop("PERSAIS_TELEGRAM_MODE")  # unset: no webhook at Telegram means polling
        polling = doctor(out.env, tmp_path)
        out.telegram.webhook = {"url": "https://persais.example/webhooks/telegram"}
        out.env["PERSAIS_TELEGRAM_MODE"] = "polling"
        forced = doctor(out.env, tmp_path)
    assert polling.status("telegram") == "ok", polling.part("telegram")
    assert "polling" in polling.part("telegram")
    # Forced polling with a webhook set is not broken: the server deletes the webhook itself
    # (app/web/telegram_polling.py); the doctor says so, as the server will do it.
    assert forced.status("telegram") == "ok", forced.part("telegram")
    assert "deleted when Persais starts" in forced.part("telegram")


def test_an_app_not_installed_on_the_home_repository_is_broken(
    tmp_path: Path, database: str
) -> None:
    with outside(tmp_path, database) as out:
        out.env["PERSAIS_HOME_REPO"] = "bea/elsewhere"
        said = doctor(out.env, tmp_path)
    assert said.status("github") == "broken"
    assert "not installed on bea" in said.part("github")
