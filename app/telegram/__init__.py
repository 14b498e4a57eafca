"""The Telegram channel (aiogram 3). Imported only where Telegram updates are handled:
aiogram costs ~3 s and ~120 MB to import, which the web process never pays."""
