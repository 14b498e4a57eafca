"""The console's Questions page: the open approvals (Deploy / Abort / a Mechanic question),
answered here through the same machinery as a chat's buttons.

Pressing a button here stores an inbox delivery (source `console`, event `answer`: the
question, the choice, the console person and whether they are an admin) and queues the job
every delivery gets, in one transaction. A worker processes it as it processes a Telegram
button press: the same claim (the first answer wins, from any surface; a later one is told
who chose), the same resume of the question's graph thread, and the question's chat is told
who chose (its message edited where the chat keeps one). Only this page's POST, behind the
session and its CSRF token, writes `console` deliveries; no webhook or poller can.

The page shows the open questions newest first and the recently closed ones with who chose
what, when and from which surface; a small fragment is polled every few seconds and swapped
only when something changed (a choice made in a chat shows up without a reload).
"""

from __future__ import annotations

import hashlib
import json
import secrets
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from app.console.web import PREFIX, Console, viewer_of
from app.forge import pull_links
from app.inbox import Delivery
from app.orchestrator import approvals
from app.orchestrator.approvals import Approval

NAV = [("Questions", "/console/questions")]
OPEN_LIMIT = 50
CLOSED_LIMIT = 20
SURFACES = {"telegram": "Telegram", "terminal": "persais chat", "github": "GitHub",
            "console": "the console"}  # fmt: skip


def buttons(question: Approval) -> list[tuple[str, str]]:
    """The choices a person answers with (key, label); a link choice ("View PR") decides
    nothing and is shown as a link instead."""
    return [(c[0], c[1]) for c in question.choices if question.link(c[0]) is None]


def links(question: Approval) -> list[tuple[str, str]]:
    """Link choices: a local pull request's [View PR] opens its page here."""
    return [
        (c[1], pull_links.console_path(c[2]) or c[2])
        for c in question.choices
        if len(c) > 2 and c[2]
    ]


def surface(question: Approval) -> str:
    if question.decided_via is None and question.choice not in {c[0] for c in question.choices}:
        return "the pull request"  # closed by its deploy, merge or close (pull_questions)
    via = question.decided_via or approvals.surface_of(question.decided_by or "")
    return SURFACES.get(via or "", via or "")


def confirm_text(question: Approval, key: str, label: str) -> str | None:
    """Deploy (and anything that releases) asks first, as its confirmation says."""
    if key == "deploy":
        return f"{label}: merge the pull request and put it in service now?"
    return None


def signature(open_ones: list[Approval], closed: list[Approval]) -> str:
    """What the lists show, in a few characters: the polled fragment is swapped only when
    this changes (a swap would take the keyboard focus off a button)."""
    state = [(q.id, q.status) for q in open_ones] + [(q.id, q.status, q.choice) for q in closed]
    return hashlib.sha256(json.dumps(state).encode()).hexdigest()[:16]


def routes(console: Console) -> list[BaseRoute]:
    intake: list[Any] = []  # one Intake for this console, built on the first answer

    async def lists() -> dict[str, Any]:
        async with console.pool.connection() as conn:
            open_ones = await approvals.open_ones(conn, limit=OPEN_LIMIT)
            closed = await approvals.recently_closed(conn, limit=CLOSED_LIMIT)
        return {
            "questions": open_ones, "closed": closed, "seen": signature(open_ones, closed),
            "buttons": buttons, "links": links, "surface": surface, "confirm": confirm_text,
        }  # fmt: skip

    async def status_of(request: Request) -> dict[str, Any]:
        """The line about the answer just given (`?answered=<id>`): on its way, taken, or
        beaten by someone else's. The polled fragment carries it too, so it follows."""
        answered = request.query_params.get("answered", "")[:40]
        async with console.pool.connection() as conn:
            question = await approvals.get(conn, answered) if answered else None
        flash, flash_class = None, ""
        person = viewer_of(request).person
        if question is None:
            pass
        elif question.status == "expired":
            flash, flash_class = (
                f"Question {question.id} expired before an answer was taken.",
                "problem",
            )
        elif question.status == "pending":
            flash, flash_class = (
                f"Your answer to question {question.id} is on its way; this page shows who "
                "chose once a worker has taken it.", "muted",
            )  # fmt: skip
        elif question.decided_by == person:
            chosen = question.label(question.choice)
            flash, flash_class = f"{chosen} — chosen by {person} (question {question.id}).", "ok"
        else:
            flash, flash_class = (
                f"Already chosen: {question.label(question.choice)} by {question.decided_by}"
                f" from {surface(question)} (question {question.id}); your answer changed nothing.",
                "problem",
            )  # fmt: skip
        return {"flash": flash, "flash_class": flash_class,
                "answered": question.id if question else ""}  # fmt: skip

    async def render(request: Request, status: int = 200, problem: str | None = None) -> Response:
        context = {**await lists(), **await status_of(request)}
        if problem is not None:
            context.update(flash=problem, flash_class="problem")
        return console.page(request, "questions.html", status, title="Questions", **context)

    async def page(request: Request) -> Response:
        return await render(request)

    async def live(request: Request) -> Response:
        """The polled fragment: 204 (nothing to swap) while the lists are as the page has
        them, else the lists anew."""
        context = await lists()
        if request.query_params.get("seen") == context["seen"]:
            return Response(status_code=204)
        return console.page(request, "questions_lists.html", **context, **await status_of(request))

    async def answer(request: Request) -> Response:
        viewer = viewer_of(request)
        approval_id = request.path_params["id"]
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        choice = next(iter(form.get("choice", [])), "")
        async with console.pool.connection() as conn:
            question = await approvals.get(conn, approval_id)
        if not viewer.admin:
            await console.audit(
                viewer, "approval.refused", f"approval:{approval_id}", choice=choice[:40],
                reason="a reader's session",
            )  # fmt: skip
            return await render(request, 403, "Only an admin may answer questions here.")
        if question is None:
            return await render(request, 404, f"Question {approval_id[:40]} is not known.")
        if question.status == "expired" or (
            question.status == "pending" and question.expires_at <= datetime.now(UTC)
        ):
            return await render(
                request, 410, f"Question {question.id} has expired; it can no longer be answered."
            )
        if question.status != "pending":
            return _back(question.id)  # the status line says who chose
        if choice not in {key for key, _ in buttons(question)}:
            return await render(
                request, 400, f"“{choice[:40]}” is not one of question {question.id}'s choices."
            )
        if console.runtime is None:
            return await render(request, 503, "This console has no queue to take answers.")
        if not intake:
            from app.intake import Intake

            intake.append(Intake(console.pool, console.runtime.queue))
        body = {"approval": question.id, "choice": choice, "person": viewer.person,
                "admin": viewer.admin}  # fmt: skip
        await intake[0].store(
            Delivery(
                source="console",
                delivery_id=f"answer:{question.id}:{secrets.token_hex(8)}",
                event="answer",
                action=None,
                body=json.dumps(body),
                lock=question.conversation,  # in order with that chat's own presses
            )
        )
        return _back(question.id)

    return [
        Route("/questions", page, methods=["GET"]),
        Route("/questions/live", live, methods=["GET"]),
        Route("/questions/{id}", answer, methods=["POST"]),
    ]


def _back(approval_id: str) -> Response:
    return RedirectResponse(f"{PREFIX}/questions?answered={approval_id}", status_code=303)
