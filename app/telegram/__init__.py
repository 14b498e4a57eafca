"""The Telegram channel (aiogram 3). Imported only where Telegram updates are handled:
aiogram costs ~6 s and ~130 MB to import as it comes, which the web process never pays;
with its types and methods built on first use (`lean_types`), ~1 s and ~26 MB."""

from app.telegram import lean_types

lean_types.install()
