"""The Telegram channel (aiogram 3). Imported only where Telegram updates are handled:
aiogram costs ~3 s and ~120 MB to import, which the web process never pays (and with its
types built on first use, `lean_types`, ~1.3 s and ~55 MB)."""

from app.telegram import lean_types

lean_types.install()
