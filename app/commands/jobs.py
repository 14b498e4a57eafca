"""`mechanic`: one Mechanic job from the terminal."""

from __future__ import annotations

import argparse
from typing import Any

from app.commands.running import Exit, with_runtime
from app.runtime import Runtime
from app.settings import Settings


def register(commands: Any) -> None:
    mechanic = commands.add_parser("mechanic", help="run one Mechanic job from here")
    mechanic.add_argument("request", help='what to build, e.g. "Create an agent Echo ..."')
    mechanic.add_argument(
        "--template-only", action="store_true",
        help="no model: scaffold from the template alone (name and kind read from the request)",
    )  # fmt: skip
    mechanic.add_argument(
        "--kind", choices=["agent", "tool"],
        help="with --template-only: what to scaffold (default: from the request, else agent)",
    )  # fmt: skip
    mechanic.add_argument(
        "--name", help="with --template-only: the name (default: from the request, as the chat)"
    )
    mechanic.add_argument(
        "--command", dest="agent_command",
        help="with --template-only: the slash command (default: the name)",
    )  # fmt: skip
    mechanic.set_defaults(func=cmd_mechanic)


def cmd_mechanic(settings: Settings, args: argparse.Namespace) -> int:
    import secrets

    from app.mechanic_jobs import home_repository

    # Before the database starts: the image has no checkout, so no local forge.
    if (no_home := home_repository.missing(settings)) is not None:
        raise Exit(2, f"mechanic: {no_home}")

    from app.costs.books import Costs
    from app.mechanic_jobs import composed
    from mechanic.job import run_job
    from mechanic.plan import PlanError
    from mechanic.scaffold import ScaffoldError

    plan = None
    if args.template_only:
        kind, name = _template_target(args)
        try:
            plan = composed.template_plan(
                kind, name, args.agent_command or name, args.request[:200]
            )
        except (ValueError, composed.MechanicUnavailable) as exc:
            raise Exit(2, f"mechanic: {str(exc).splitlines()[0]}") from None

    async def progress(stage: str) -> None:
        print(f"… {stage}", flush=True)

    async def body(runtime: Runtime) -> int:
        try:
            deps = composed.job_deps(
                settings, runtime.pool, progress, use_aider=not args.template_only
            )
        except composed.MechanicUnavailable as exc:
            raise Exit(2, f"mechanic: {exc}") from None
        job_id = secrets.token_hex(4)
        await composed.record_start(
            runtime.pool, job_id, conversation="cli:mechanic", user="cli", request=args.request
        )
        try:  # its model calls count like a chat job's: recorded, and under the budgets
            async with Costs.of(settings, runtime.pool).account("job", job_id):
                outcome = await run_job(job_id, args.request, deps, plan=plan)
        except (PlanError, ScaffoldError) as exc:
            from mechanic.job import JobOutcome

            outcome = JobOutcome("failed", f"The plan could not be used: {exc}")
        await composed.record_outcome(runtime.pool, job_id, outcome)
        print(outcome.message)
        return 0 if outcome.status in ("opened", "question") else 1

    return with_runtime(settings, body)


def _template_target(args: argparse.Namespace) -> tuple[str, str]:
    """(kind, name) as the chat reads them from "Create an agent Echo ...", unless given."""
    from app.agents.builtin.mechanic import template_guess

    guess = template_guess(args.request)
    name = args.name or (guess[1] if guess else None)
    if name is None:
        raise Exit(
            2,
            '--template-only: name what to build ("Create an agent Echo ...") or pass --name',
        )
    kind = args.kind or (guess[0] if guess and not args.name else "agent")
    return kind, name
