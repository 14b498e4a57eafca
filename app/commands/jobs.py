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
    mechanic.add_argument("--template-only", action="store_true", help="no model: the template")
    mechanic.add_argument("--kind", default="agent", choices=["agent", "tool"])
    mechanic.add_argument("--name", help="with --template-only: the agent's name")
    mechanic.add_argument("--command", dest="agent_command", help="with --template-only")
    mechanic.set_defaults(func=cmd_mechanic)


def cmd_mechanic(settings: Settings, args: argparse.Namespace) -> int:
    import secrets

    from app.mechanic_jobs import composed
    from mechanic.job import run_job
    from mechanic.plan import PlanError
    from mechanic.scaffold import ScaffoldError

    plan = None
    if args.template_only:
        if not args.name:
            raise Exit(2, "--template-only needs --name (and --command, default: the name)")
        try:
            plan = composed.template_plan(
                args.kind, args.name, args.agent_command or args.name, args.request[:200]
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
        try:
            outcome = await run_job(job_id, args.request, deps, plan=plan)
        except (PlanError, ScaffoldError) as exc:
            from mechanic.job import JobOutcome

            outcome = JobOutcome("failed", f"The plan could not be used: {exc}")
        await composed.record_outcome(runtime.pool, job_id, outcome)
        print(outcome.message)
        return 0 if outcome.status in ("opened", "question") else 1

    return with_runtime(settings, body)
