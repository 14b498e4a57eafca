"""Persais: a GitHub App and Telegram bot that changes its own code."""
