"""Secrets in text: which shapes are found, which look-alikes are left alone, that a
redacted text keeps its lines, and that a secret pasted into a Mechanic request is cut out
before the request is kept anywhere. The tokens are made up at run time (no secret-shaped text
in this repository for a scanner to trip on)."""

from __future__ import annotations

import asyncio
import random
import string
from pathlib import Path
from typing import Any

from app.settings import Settings, load_settings
from mechanic import redaction
from tests.support.conversation import conversations, say

ALNUM = string.ascii_letters + string.digits


def made_up(length: int, alphabet: str = ALNUM) -> str:
    rng = random.Random(length)  # the same value every run
    while True:
        value = "".join(rng.choice(alphabet) for _ in range(length))
        if any(c.isdigit() for c in value) and any(c.isalpha() for c in value):
            return value


GITHUB = "ghp_" + made_up(36)
AWS = "AKIA" + made_up(16, string.ascii_uppercase + string.digits)
OPENAI = "sk-proj-" + made_up(48)
TELEGRAM = "7312345678:AA" + made_up(33)
SLACK = "xoxb-" + made_up(24)
KEY_BODY = [made_up(64) for _ in range(3)]
PEM = "\n".join(["-----BEGIN RSA PRIVATE KEY-----", *KEY_BODY, "-----END RSA PRIVATE KEY-----"])
GENERATED = made_up(32)


def test_each_shape_is_found_with_its_kind_and_line() -> None:
    text = "\n".join([
        f'GITHUB_TOKEN = "{GITHUB}"',
        f"aws_access_key_id = {AWS}",
        f"client = OpenAI(api_key='{OPENAI}')",
        f"bot = Bot('{TELEGRAM}')",
        f"slack: {SLACK}",
        "DATABASE_URL=postgresql://persais:" + GENERATED + "@db.internal:5432/persais",
        PEM,
        f'"client_secret": "{GENERATED[::-1]}"',
    ])  # fmt: skip
    found = redaction.find(text)
    assert [(s.kind, s.line(text)) for s in found] == [
        ("GitHub token", 1),
        ("AWS access key", 2),
        ("API key", 3),
        ("Telegram bot token", 4),
        ("Slack token", 5),
        ("password in a URL", 6),
        ("private key", 7),
        ("secret value", 12),
    ]
    clean = redaction.redact(text)
    assert clean.count("\n") == text.count("\n")  # path:line references stay true
    for secret in [GITHUB, AWS, OPENAI, TELEGRAM, SLACK, GENERATED, GENERATED[::-1], *KEY_BODY]:
        assert secret not in clean
    lines = clean.splitlines()
    assert lines[0] == 'GITHUB_TOKEN = "[redacted: GitHub token]"'
    assert lines[5] == (
        "DATABASE_URL=postgresql://persais:[redacted: password in a URL]@db.internal:5432/persais"
    )
    assert lines[6] == "[redacted: private key]"
    assert lines[7:11] == ["", "", "", ""]
    assert lines[11] == '"client_secret": "[redacted: secret value]"'


def test_text_whose_lower_case_is_longer_is_still_cut_in_the_right_place() -> None:
    text = f"# İstanbul office\napi_key = '{GENERATED}'  # İ\n"  # "İ".lower() is 2 chars
    assert redaction.redact(text) == (
        "# İstanbul office\napi_key = '[redacted: secret value]'  # İ\n"
    )


def test_look_alikes_are_left_alone() -> None:
    text = "\n".join([
        'api_key = "your-api-key-here"',
        'SECRET_KEY = "changeme-changeme"',
        "password = os.environ['DB_PASSWORD']",
        "token: ${{ secrets.GITHUB_TOKEN }}",
        "DATABASE_URL=postgresql://user:pass@localhost:5432/persais",
        'secret_path = "/run/secrets/api_key_2024"',
        "github_webhook_secret: SecretStr | None = Field(default=None, alias='X')",
        'token_count = "123456789012345"',  # digits only: a number, not a key
        "aws_access_key_id = AKIAIOSFODNN7EXAMPLE",  # AWS's documentation example
        'url = f"postgresql://persais:{password}@db/x"; api_key = f"{key_for(2024)}"',
        'session_token_name = "persais-session-cookie"',  # words: written, not generated
        "sha = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'",
    ])  # fmt: skip
    assert redaction.find(text) == []
    assert redaction.redact(text) == text


def test_configured_values_are_found_wherever_they_appear() -> None:
    configured = made_up(20)
    text = f"# pasted by mistake: {configured}\nnothing = 'here'\n{KEY_BODY[1]}\n"
    found = redaction.find(text, known=[configured, PEM, "short"])
    assert [(s.kind, s.line(text)) for s in found] == [
        ("configured secret", 1),
        ("configured secret", 3),  # a line of a configured key, out of its block
    ]
    assert "short" not in {text[s.start : s.end] for s in found}


def test_settings_list_every_configured_secret(tmp_path: Path) -> None:
    key_file = tmp_path / "app.pem"
    key_file.write_text(PEM)
    settings = load_settings(
        None,
        DATABASE_URL=f"postgresql://persais:{GENERATED}@db:5432/persais",
        LLM_API_KEY=OPENAI,
        GITHUB_APP_ID="1",
        GITHUB_PRIVATE_KEY_PATH=str(key_file),
        GITHUB_WEBHOOK_SECRET="hook-" + GENERATED,
    )
    values = settings.secrets()
    assert OPENAI in values
    assert GENERATED in values  # the database password on its own
    assert PEM in values
    assert "hook-" + GENERATED in values
    assert "1" not in values


def test_a_secret_pasted_into_a_request_or_a_lesson_is_cut_out_before_it_is_kept(
    settings: Settings, database: str, sql: Any
) -> None:
    async def body() -> str:
        async with conversations(settings, database) as convo:
            (reply,) = await say(
                convo, f"/mechanic Create an agent Slacker that posts with the token {SLACK}"
            )
            await say(convo, f"/lesson dynamic/agents/ post to Slack as {SLACK} only")
            return reply.text

    reply = asyncio.run(body())
    assert "I cut what looked like a secret (Slack token) out of your request" in reply
    assert SLACK not in reply
    ((request, plan),) = sql("SELECT request, given_plan::text FROM jobs")
    assert request.endswith("posts with the token [redacted: Slack token]")
    assert SLACK not in plan  # the template's description is made from the request
    ((detail,),) = sql("SELECT detail FROM audit_log WHERE action = 'mechanic.requested'")
    assert detail["secrets_cut"] == ["Slack token"]
    assert SLACK not in str(detail)
    # A lesson goes into prompts: cut out there too.
    assert sql("SELECT text FROM lessons") == [
        ("dynamic/agents/ post to Slack as [redacted: Slack token] only",)
    ]
    assert SLACK not in str(sql("SELECT detail FROM audit_log"))
