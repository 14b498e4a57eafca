"""The kinds of Telegram update Persais reads, in one place: what the bot asks Telegram for
(`persais telegram set-webhook`), what the webhook's door lets in
(`app.web.telegram_updates`), and what the channel feeds its routers. Free of aiogram, so
the web process reads it without paying for aiogram's import."""

from __future__ import annotations

READ_KINDS: tuple[str, ...] = ("message", "callback_query")
