"""Settings for a test: every channel configured with the test secrets, fast retries."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from app.settings import Settings, load_settings
from tests.support.webhooks import GITHUB_SECRET, TELEGRAM_SECRET, TELEGRAM_TOKEN


def make_settings(home: Path, database: str | None, **values: Any) -> Settings:
    base: dict[str, Any] = {
        "PERSAIS_HOME": str(home),
        "GITHUB_WEBHOOK_SECRET": GITHUB_SECRET,
        "TELEGRAM_BOT_TOKEN": TELEGRAM_TOKEN,
        "TELEGRAM_WEBHOOK_SECRET": TELEGRAM_SECRET,
        "PERSAIS_TELEGRAM_MODE": "webhook",  # tests post updates; polling has its own
        "PERSAIS_WORKER_RETRY_BASE_SECONDS": 0,
        "PERSAIS_WORKER_MAX_ATTEMPTS": 3,
    }
    if database is not None:
        base["DATABASE_URL"] = database
    base.update(values)
    return load_settings(None, **base)
