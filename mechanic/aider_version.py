"""The aider-chat release Persais is built and tested against.

The single source of the pin: `bootstrap.py` and the Dockerfile install exactly this
version into Aider's own virtualenv, and `persais doctor` checks the installed one.
"""

AIDER_CHAT_VERSION = "0.86.2"
