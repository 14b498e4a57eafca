"""Webhook ingress: verify the sender, store the delivery with its job, answer at once.

Nothing slow happens here. A refused request stores nothing; a repeated delivery id is
answered as accepted and not queued again; a Telegram update of a kind Persais does not
read is answered and dropped.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from app.inbox import Delivery
from app.intake import Intake, Unstorable
from app.web import signature, telegram_updates
from app.web.body import BodyBudget, read_body
from app.web.metrics import Metrics
from app.web.payload import parse_object
from app.web.refusal import Refusal
from app.web.telegram_updates import unread_kind, update_id_of

log = logging.getLogger(__name__)

GITHUB_MAX_BODY = 25 * 1024 * 1024  # GitHub caps payloads at 25 MB
TELEGRAM_MAX_BODY = 1024 * 1024
_EVENT_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_DELIVERY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")


class Dropped(Exception):
    """Acknowledged and not stored: nothing in Persais reads it."""

    def __init__(self, reason: str, kind: str) -> None:
        super().__init__(kind)
        self.reason = reason
        self.kind = kind


@dataclass
class WebhookIngress:
    intake: Intake
    metrics: Metrics
    github_secret: bytes | None
    telegram_secret: bytes | None
    telegram_bot_id: int | None
    unverified_bodies: BodyBudget

    async def github(self, request: Request) -> Response:
        try:
            delivery = await self._github_delivery(request)
        except Refusal as refusal:
            return self._refuse("github", refusal)
        return await self._store(delivery, accepted=202)

    async def telegram(self, request: Request) -> Response:
        try:
            delivery = await self._telegram_delivery(request)
        except Refusal as refusal:
            return self._refuse("telegram", refusal)
        except Dropped as dropped:
            self.metrics.dropped.labels("telegram", dropped.reason).inc()
            log.debug("dropped a Telegram update of kind %r: nothing reads it", dropped.kind)
            return JSONResponse({"status": "dropped", "reason": dropped.reason}, status_code=200)
        return await self._store(delivery, accepted=200)

    async def _github_delivery(self, request: Request) -> Delivery:
        if not self.github_secret:
            raise Refusal(403, "unconfigured", "GitHub webhooks are off: set GITHUB_WEBHOOK_SECRET")
        with self.unverified_bodies.hold() as held:
            body = await read_body(request, GITHUB_MAX_BODY, held)
            if not signature.verify_github(
                self.github_secret, body, request.headers.get("x-hub-signature-256")
            ):
                raise Refusal(401, "signature", "X-Hub-Signature-256 is missing or does not match")
        event = request.headers.get("x-github-event", "")
        delivery_id = request.headers.get("x-github-delivery", "")
        if not _EVENT_RE.match(event):
            raise Refusal(400, "headers", "X-GitHub-Event is missing or malformed")
        if not _DELIVERY_RE.match(delivery_id):
            raise Refusal(400, "headers", "X-GitHub-Delivery is missing or malformed")
        _require_json(request)
        payload, text = parse_object(b"".join(body))
        action = payload.get("action")
        return Delivery(
            source="github",
            delivery_id=delivery_id,
            event=event,
            action=action if isinstance(action, str) else None,
            body=text,
        )

    async def _telegram_delivery(self, request: Request) -> Delivery:
        if not self.telegram_secret or self.telegram_bot_id is None:
            raise Refusal(
                403, "unconfigured",
                "Telegram webhooks are off: set TELEGRAM_BOT_TOKEN and TELEGRAM_WEBHOOK_SECRET",
            )  # fmt: skip
        if not signature.verify_telegram(
            self.telegram_secret, request.headers.get("x-telegram-bot-api-secret-token")
        ):
            raise Refusal(401, "signature", "X-Telegram-Bot-Api-Secret-Token does not match")
        _require_json(request)
        body = b"".join(await read_body(request, TELEGRAM_MAX_BODY))
        update, text = parse_object(body)
        update_id = update_id_of(update)
        kind = unread_kind(update)
        if kind is not None:
            raise Dropped("unhandled_kind", kind)
        return telegram_updates.delivery(self.telegram_bot_id, update_id, update, text)

    async def _store(self, delivery: Delivery, *, accepted: int) -> Response:
        try:
            inbox_id = await self.intake.store(delivery)
        except Unstorable as exc:
            # JSON that Python accepts but jsonb does not (e.g. \u0000 in a string).
            return self._refuse(
                delivery.source, Refusal(400, "payload", f"the payload cannot be stored: {exc}")
            )
        if inbox_id is None:
            self.metrics.duplicates.labels(delivery.source).inc()
            return JSONResponse(
                {"status": "duplicate", "delivery": delivery.delivery_id}, status_code=accepted
            )
        self.metrics.received.labels(delivery.source).inc()
        return JSONResponse(
            {"status": "accepted", "delivery": delivery.delivery_id, "inbox": inbox_id},
            status_code=accepted,
        )

    def _refuse(self, source: str, refusal: Refusal) -> Response:
        self.metrics.refused.labels(source, refusal.reason).inc()
        log.warning("refused %s webhook (%d): %s", source, refusal.status, refusal.message)
        headers = {"Retry-After": str(refusal.retry_after)} if refusal.retry_after else None
        return JSONResponse(
            {"error": refusal.message, "reason": refusal.reason},
            status_code=refusal.status,
            headers=headers,
        )


def _require_json(request: Request) -> None:
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type != "application/json":
        raise Refusal(415, "content_type", "expected Content-Type: application/json")
