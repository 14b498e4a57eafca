"""`persais doctor --offline`: one line per check, and exit 0 only when what is configured works."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support.processes import persais_env


def doctor(env: dict[str, str], cwd: Path) -> tuple[int, dict[str, str]]:
    """`persais doctor --offline` (tests/test_doctor_asks.py asks the fakes)."""
    done = subprocess.run(
        [sys.executable, "-m", "app", "doctor", "--offline"],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    lines = {line.split()[0]: line for line in done.stdout.splitlines() if line.strip()}
    return done.returncode, lines


def app_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    return pem.decode()


def test_a_configured_machine_is_all_ok(tmp_path: Path, database: str) -> None:
    key = tmp_path / "app.pem"
    key.write_text(app_key())
    env = persais_env(
        tmp_path / "home",
        database,
        GITHUB_APP_ID="1234",
        GITHUB_PRIVATE_KEY_PATH=str(key),
        PERSAIS_TELEGRAM_ALLOWED_USERS="42",
        FLY_API_TOKEN="fo1_test",
        FLY_APP_NAME="persais-test",
        LLM_API_KEY="sk-test",
        EMBEDDINGS_MODEL="text-embedding-3-small",
    )
    code, lines = doctor(env, tmp_path)
    assert set(lines) == {
        "settings", "database", "git", "aider", "sandbox", "github", "telegram", "fly", "model",
        "cost", "embeddings",
    }  # fmt: skip
    sandbox = "ok" if shutil.which("bwrap") else "missing"  # missing is allowed, not broken
    for name, line in lines.items():
        assert line.split()[1] == (sandbox if name == "sandbox" else "ok"), line
    assert "pgvector" in lines["database"]
    assert "aider-chat 0.86.2" in lines["aider"]
    assert "App 1234, key parses" in lines["github"]
    assert "sk-test" not in "\n".join(lines.values())
    assert code == 0


def test_what_is_not_configured_is_missing_and_does_not_fail(tmp_path: Path, database: str) -> None:
    env = persais_env(tmp_path / "home", database)
    for variable in ("GITHUB_WEBHOOK_SECRET", "TELEGRAM_BOT_TOKEN", "TELEGRAM_WEBHOOK_SECRET"):
        env.pop(variable)
    code, lines = doctor(env, tmp_path)
    assert lines["github"].split()[1] == "missing"
    assert lines["telegram"].split()[1] == "missing"
    assert lines["fly"].split()[1] == "missing"
    assert code == 0


def test_what_is_configured_but_broken_fails_with_a_fix(tmp_path: Path, database: str) -> None:
    env = persais_env(
        tmp_path / "home",
        database,
        GITHUB_APP_ID="1234",
        GITHUB_PRIVATE_KEY="-----BEGIN RSA PRIVATE KEY-----\nnot a key\n-----END RSA",
        AIDER_BIN=str(tmp_path / "no-such-aider"),
    )
    code, lines = doctor(env, tmp_path)
    assert code == 1
    assert lines["github"].split()[1] == "broken"
    assert "GITHUB_PRIVATE_KEY" in lines["github"]
    assert lines["aider"].split()[1] == "broken"
    assert "not a key" not in lines["github"]


def test_an_unreachable_database_is_broken(tmp_path: Path) -> None:
    env = persais_env(tmp_path / "home", "postgresql://nobody@127.0.0.1:1/none")
    code, lines = doctor(env, tmp_path)
    assert code == 1
    assert lines["database"].split()[1] == "broken"
    assert "cannot connect" in lines["database"]


def test_a_bad_dotenv_is_listed_variable_by_variable(tmp_path: Path, database: str) -> None:
    """The `.env` in the working directory, as `persais` reads it: every bad line is named,
    the parts it spoils are broken, the rest is checked, and no value is echoed."""
    env = persais_env(tmp_path / "home", database)
    env.pop("TELEGRAM_WEBHOOK_SECRET")
    env.pop("TELEGRAM_BOT_TOKEN")
    (tmp_path / ".env").write_text(
        "TELEGRAM_BOT_TOKEN=not-a-token\nPERSAIS_AGENT_MEMORY_MB=12\nGITHUB_APP_ID=77\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "app", "doctor", "--offline"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    lines = done.stdout.splitlines()
    bad = [line.split()[2] for line in lines if line.startswith("settings   broken")]
    assert bad == ["TELEGRAM_BOT_TOKEN:", "PERSAIS_AGENT_MEMORY_MB:", "GITHUB_PRIVATE_KEY:"]
    status = {line.split()[0]: line.split()[1] for line in lines if line.strip()}
    assert (status["telegram"], status["sandbox"], status["github"]) == ("broken",) * 3
    assert status["database"] == "ok"
    assert "not-a-token" not in done.stdout + done.stderr
    assert done.returncode == 1
    assert "Traceback" not in done.stderr


def test_budgets_without_a_price_are_broken_since_they_would_cap_nothing(
    tmp_path: Path, database: str
) -> None:
    """A budget counts dollars; without a price only what the provider reports counts, and
    most report nothing: a cap that silently does not cap is the surprise issue 20 forbids."""
    env = persais_env(
        tmp_path / "home", database, PERSAIS_BUDGET_DAY_USD="2",
        LLM_API_BASE="https://api.openai.com/v1",  # reports tokens, not what they cost
    )  # fmt: skip
    code, lines = doctor(env, tmp_path)
    assert code == 1
    assert lines["cost"].split()[1] == "broken"
    assert "day $2 set, but no price" in lines["cost"]
    assert "LLM_PRICE_INPUT_PER_MTOK" in lines["cost"]

    env.update(LLM_PRICE_INPUT_PER_MTOK="3", LLM_PRICE_OUTPUT_PER_MTOK="15")
    code, lines = doctor(env, tmp_path)
    assert lines["cost"].split()[1] == "ok"
    assert "$3 / $15 per million tokens; day $2" in lines["cost"]

    bare = persais_env(tmp_path / "home", database)
    _, lines = doctor(bare, tmp_path)
    assert lines["cost"].split()[1] == "ok"
    assert "no budgets" in lines["cost"]

    # OpenRouter (the default LLM_API_BASE) reports each call's cost in its usage.
    routed = persais_env(tmp_path / "home", database, PERSAIS_BUDGET_JOB_USD="0.5")
    _, lines = doctor(routed, tmp_path)
    assert lines["cost"].split()[1] == "ok"
    assert "the provider reports each call's cost" in lines["cost"]
