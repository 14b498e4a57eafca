"""The one settings object: names, shapes, and the one-line error with exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.settings import SettingsError, load_settings

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw0"


def test_defaults_need_nothing_configured() -> None:
    settings = load_settings(None)
    assert settings.database_url is None
    assert settings.persais_home == Path(".persais")
    assert settings.telegram_allowed_users == []
    assert settings.github_api_url == "https://api.github.com"


def test_values_are_parsed_into_their_types() -> None:
    settings = load_settings(
        None,
        PERSAIS_TELEGRAM_ALLOWED_USERS="1, 22,333",
        TELEGRAM_BOT_TOKEN=TOKEN,
        GITHUB_APP_ID="42",
        GITHUB_PRIVATE_KEY="-----BEGIN RSA PRIVATE KEY-----\\nabc\\n-----END RSA PRIVATE KEY-----",
        GITHUB_API_URL="http://127.0.0.1:9000/",
    )
    assert settings.telegram_allowed_users == [1, 22, 333]
    assert settings.telegram_bot_id == 123456789
    assert settings.github_app_id == 42
    assert settings.private_key_pem() is not None
    assert "\nabc\n" in settings.private_key_pem()  # type: ignore[operator]
    assert settings.github_api_url == "http://127.0.0.1:9000"
    assert TOKEN not in repr(settings)  # secrets never print


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"PERSAIS_TELEGRAM_ALLOWED_USERS": "12,alice"},
            "PERSAIS_TELEGRAM_ALLOWED_USERS: expected",
        ),
        ({"TELEGRAM_BOT_TOKEN": "not-a-token"}, "TELEGRAM_BOT_TOKEN: expected a bot token"),
        ({"GITHUB_APP_ID": "abc"}, "GITHUB_APP_ID: "),
        ({"GITHUB_APP_ID": "12"}, "GITHUB_PRIVATE_KEY: required when GITHUB_APP_ID is set"),
        ({"FLY_API_TOKEN": "fo1_x"}, "FLY_APP_NAME: required when FLY_API_TOKEN is set"),
        ({"PERSAIS_HOME_REPO": "not a repo"}, "PERSAIS_HOME_REPO: expected owner/name"),
        ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL: expected a postgresql:// URL"),
        ({"LLM_API_BASE": "ftp://x"}, "LLM_API_BASE: expected an http(s) URL"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_variable(values: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(None, **values)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)
    for name, value in values.items():
        if name.endswith(("TOKEN", "KEY", "SECRET", "DATABASE_URL")):
            assert value not in str(caught.value)  # a secret is never echoed back


def clean_env(**values: str) -> dict[str, str]:
    keep = {"PATH", "HOME", "LANG", "SYSTEMROOT", "TMPDIR"}
    return {**{k: v for k, v in os.environ.items() if k in keep}, **values}


def test_the_cli_says_what_is_wrong_in_one_line_and_exits_2(tmp_path: Path) -> None:
    env = clean_env(GITHUB_APP_ID="12", PERSAIS_HOME=str(tmp_path))
    done = subprocess.run(
        [sys.executable, "-m", "app", "serve"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        "persais: configuration error: GITHUB_PRIVATE_KEY: required when GITHUB_APP_ID is set"
    ]


def test_a_dotenv_file_in_the_working_directory_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("PERSAIS_TELEGRAM_ADMINS=oops\n")
    done = subprocess.run(
        [sys.executable, "-m", "app", "migrate"],
        capture_output=True, text=True, env=clean_env(), cwd=tmp_path, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert (
        "PERSAIS_TELEGRAM_ADMINS: expected comma-separated numeric Telegram user ids" in done.stderr
    )
