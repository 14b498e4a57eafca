"""`telegram set-webhook`, `delete-webhook` and `info`: the bot's webhook at Telegram, which
also decides how a running Persais takes updates (PERSAIS_TELEGRAM_MODE unset: by the
webhook when one is set, else by long polling)."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from app.commands.running import Exit
from app.settings import Settings


def register(commands: Any) -> None:
    telegram = commands.add_parser("telegram", help="the Telegram bot's webhook")
    telegram_commands = telegram.add_subparsers(dest="telegram_command", required=True)
    set_webhook = telegram_commands.add_parser("set-webhook", help="point Telegram at URL")
    set_webhook.add_argument("url", help="https://<your host>/webhooks/telegram")
    set_webhook.set_defaults(func=cmd_set_webhook)
    delete_webhook = telegram_commands.add_parser(
        "delete-webhook", help="remove the webhook: Persais takes updates by long polling"
    )
    delete_webhook.set_defaults(func=cmd_delete_webhook)
    info = telegram_commands.add_parser("info", help="getWebhookInfo: pending updates, errors")
    info.set_defaults(func=cmd_info)


def cmd_set_webhook(settings: Settings, args: argparse.Namespace) -> int:
    if settings.telegram_bot_token is None or settings.telegram_webhook_secret is None:
        raise Exit(2, "set TELEGRAM_BOT_TOKEN and TELEGRAM_WEBHOOK_SECRET first")
    if not args.url.startswith("https://") and not args.url.startswith("http://127.0.0.1"):
        raise Exit(2, f"Telegram calls webhooks over https only: {args.url}")
    from app.telegram.channel import make_bot
    from app.telegram.kinds import READ_KINDS

    async def run() -> None:
        bot = make_bot(settings)
        try:
            await bot.set_webhook(
                args.url,
                secret_token=settings.telegram_webhook_secret.get_secret_value(),  # type: ignore[union-attr]
                allowed_updates=list(READ_KINDS),
                drop_pending_updates=False,
            )
        finally:
            await bot.session.close()

    asyncio.run(run())
    print(f"webhook set to {args.url} (updates: {', '.join(READ_KINDS)})")
    if settings.telegram_mode == "polling":
        print("but PERSAIS_TELEGRAM_MODE=polling: a running Persais deletes this webhook again")
    else:
        print("mode: webhook — a running Persais stops polling at its next request")
    return 0


def cmd_delete_webhook(settings: Settings, args: argparse.Namespace) -> int:
    if settings.telegram_bot_token is None:
        raise Exit(2, "set TELEGRAM_BOT_TOKEN first")
    from app.telegram.channel import make_bot

    async def run() -> None:
        bot = make_bot(settings)
        try:
            await bot.delete_webhook(drop_pending_updates=False)
        finally:
            await bot.session.close()

    asyncio.run(run())
    print("webhook deleted (updates not yet fetched are kept)")
    if settings.telegram_mode == "webhook":
        print("but PERSAIS_TELEGRAM_MODE=webhook: nothing polls; unset it to poll")
    else:
        from app.web.telegram_polling import WEBHOOK_RECHECK_SECONDS

        print(
            "mode: polling — a running Persais starts polling within"
            f" {WEBHOOK_RECHECK_SECONDS:.0f} s"
        )
    return 0


def cmd_info(settings: Settings, args: argparse.Namespace) -> int:
    if settings.telegram_bot_token is None:
        raise Exit(2, "set TELEGRAM_BOT_TOKEN first")
    from app.telegram.channel import make_bot

    async def run() -> object:
        bot = make_bot(settings)
        try:
            return await bot.get_webhook_info()
        finally:
            await bot.session.close()

    info: Any = asyncio.run(run())
    print(f"url:              {info.url or '(none)'}")
    print(f"persais takes:    {_mode(settings.telegram_mode, info.url or '')}")
    print(f"pending updates:  {info.pending_update_count}")
    if info.last_error_message:
        print(
            f"last error:       {info.last_error_date:%Y-%m-%d %H:%M:%S} {info.last_error_message}"
        )
    print(f"allowed updates:  {', '.join(info.allowed_updates or []) or '(all)'}")
    return 0


def _mode(forced: str | None, url: str) -> str:
    from app.web.telegram_polling import wants_polling

    if forced:
        return f"{'long polling' if forced == 'polling' else 'the webhook'} (PERSAIS_TELEGRAM_MODE)"
    return "the webhook" if not wants_polling(forced, url) else "long polling (no webhook set)"
