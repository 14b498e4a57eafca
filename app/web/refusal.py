"""Why a webhook request is refused: the status, a metric label and a one-line reason."""

from __future__ import annotations


class Refusal(Exception):
    def __init__(
        self, status: int, reason: str, message: str, *, retry_after: int | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.retry_after = retry_after
