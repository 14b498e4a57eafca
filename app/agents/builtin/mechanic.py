"""`/mechanic`: describe a change; the Mechanic builds it as a pull request.

Each request in Mechanic mode becomes a job (see `app/mechanic_jobs/`) that a worker
runs; progress and the pull request come back into the conversation through the outbox.
With no model configured, the Mechanic says so and offers the template alone. A job whose
estimate is above PERSAIS_QUOTE_ABOVE_USD waits for [Start] (see `app/costs/quote.py`).
"""

from __future__ import annotations

import re
from typing import ClassVar

from app.agents.base import Agent, AgentContext, Choice, Message, Reply

_NAMED = re.compile(
    r"\b(agent|tool)\s+(?:called\s+|named\s+)?[\"'`]?([A-Za-z][A-Za-z0-9_]{1,31})\b", re.I
)
_FILLER = {"that", "which", "who", "to", "for", "with", "and"}
# Jobs held until a person says yes, by question kind: (the yes choice, said on a no).
HELD = {
    "quote": ("start", "Cancelled job {job}; no model was called."),
    "template": ("go", "Cancelled; nothing was built."),
}


def template_guess(request: str) -> tuple[str, str] | None:
    """("agent" | "tool", name) from "Create an agent Echo that ...", or None."""
    match = _NAMED.search(request)
    if match is None or match.group(2).lower() in _FILLER:
        return None
    return match.group(1).lower(), match.group(2).lower()


class MechanicAgent(Agent):
    name = "mechanic"
    command = "mechanic"
    description = "describe a change; the Mechanic builds it as a pull request"
    permissions: ClassVar[tuple[str, ...]] = ("mechanic", "deploy")

    async def handle(self, message: Message, ctx: AgentContext) -> Reply | str:
        jobs = ctx.capability("mechanic")
        said = message.text.strip()  # `start` cuts out secrets again, and audits the cut
        request, cut = jobs.without_secrets(said)
        note = (
            f" I cut what looked like a secret ({', '.join(sorted(set(cut)))}) out of your "
            "request: secrets go in configuration, never in code, a prompt or a pull request."
            if cut
            else ""
        )
        if not request:
            return (
                "Mechanic mode. Describe the agent you want, for example: "
                "Create an agent Echo that repeats my messages"
            )
        if (nowhere := jobs.nowhere_to_commit) is not None:  # the image: before any job
            return f"The Mechanic cannot run here: {nowhere}."
        if jobs.model_configured:
            quoted = await jobs.quote()
            job = await jobs.start(
                conversation=message.conversation, user=message.user, request=said,
                hold=quoted is not None,
            )  # fmt: skip
            if quoted is not None:  # above PERSAIS_QUOTE_ABOVE_USD: the person decides first
                return Reply(
                    f"{quoted.text()} — start job {job}?{note}",
                    (Choice("start", "Start"), Choice("cancel", "Cancel")),
                    question=f"quote:{job}",
                )
            return f"On it: job {job}. Progress shows here; /abort stops it.{note}"
        guess = template_guess(request)
        if guess is None:
            return (
                "No model is configured (LLM_API_KEY), so I cannot plan from a description. "
                'Name what to build ("Create an agent Echo …") and I can scaffold it from '
                "the template alone."
            )
        kind, name = guess
        from app.mechanic_jobs.composed import template_plan

        plan = template_plan(kind, name, name, _description(request))
        job = await jobs.start(
            conversation=message.conversation, user=message.user, request=said,
            plan=plan.model_dump(), hold=True,
        )  # fmt: skip
        return Reply(
            f"No model is configured (LLM_API_KEY), so no code can be written for this. "
            f"Scaffold the {kind} {name} (/{name}) from the template alone, as job {job}?{note}",
            (Choice("go", "Scaffold from template"), Choice("no", "Cancel")),
            question=f"template:{job}",
        )

    async def on_choice(self, question: str, choice: str, ctx: AgentContext) -> Reply | str:
        jobs = ctx.capability("mechanic")
        kind, _, job_id = question.partition(":")
        if kind in HELD:  # a job held for a yes: its estimate, or its template-only plan
            go, cancelled = HELD[kind]
            if choice == go:
                if await jobs.confirm(job_id):
                    return f"On it: job {job_id}. Progress shows here; /abort stops it."
                return f"Job {job_id} is no longer waiting."
            await jobs.decline(job_id)
            return cancelled.format(job=job_id)
        if kind == "pr":
            if choice == "abort":
                return str(await jobs.withdraw(job_id, by="mechanic"))
            if choice == "deploy":  # queued, or refused with [Deploy] offered again
                pressed: Reply | str = await ctx.capability("deploy").pressed(job_id)
                return pressed
        return f"Noted: {choice}."


def _description(request: str) -> str:
    text = " ".join(request.split()).replace('"', "'").replace("\\", "/")
    return text[:200] or "scaffolded from the template"
