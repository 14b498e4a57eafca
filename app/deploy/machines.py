"""Moving Fly machines for a deploy or a rollback, and handing the run over when the machine
being moved is the one running it.

A machine that runs the deploy is replaced onto the release like any other; before it goes
(`Handoff`), the rest of the run is queued again (same request, same messages) for the
process that replaces it.
"""

from __future__ import annotations

from app import audit
from app.deploy.context import Context
from app.deploy.fly import FlyDeployer, FlyMachines, Handoff, RollFailed
from app.deploy.ledger import Release
from app.deploy.telling import Say

HANDOFF_SECONDS = 3.0  # a replaced process stops taking jobs well within this


def on_fly(release: Release | None) -> str | None:
    """PERSAIS_RELEASE for a release: none for the image's own agents."""
    return release.sha if release is not None and release.source == "merge" else None


async def roll(
    context: Context, release: Release, previous: Release | None, expect: set[str], say: Say
) -> list[str]:
    """Move the machines onto `release` (back onto `previous` if it fails); the problems,
    none when every machine runs it. Raises Handoff when this process's machine is next."""
    settings = context.settings
    assert settings.fly_api_token is not None
    assert settings.fly_app_name is not None
    machines = FlyMachines(
        settings.fly_api_url, settings.fly_api_token.get_secret_value(), settings.fly_app_name,
    )  # fmt: skip
    deployer = FlyDeployer(
        machines, ready_port=settings.fly_ready_port,
        own_machine=settings.fly_machine_id, runs=context.here.running.sha or "",
        may_hand_off=say.handoffs * HANDOFF_SECONDS < settings.deploy_timeout_seconds,
        deadline=settings.deploy_timeout_seconds,
        progress=lambda text: say.progress(f"🚀 {release.label()}: {text}"),
        outcome=lambda machine, name, outcome, detail: record(
            context, release, machine, name, outcome, detail
        ),
    )  # fmt: skip
    try:
        await deployer.roll(on_fly(release), expect, on_fly(previous))
    except RollFailed as exc:
        back = f"{len(exc.returned)} machine(s) put back"
        if exc.problems:
            back += f"; NOT put back: {'; '.join(exc.problems)}"
        return [f"{exc.reason} ({back})"]
    finally:
        await machines.close()
    return []


async def record(
    context: Context, release: Release, machine: str, name: str, outcome: str, detail: str
) -> None:
    """One machine's outcome in the ledger's per-machine record (the console shows it)."""
    async with context.pool.connection() as conn:
        await conn.execute(
            "INSERT INTO release_machines (release, machine, name, outcome, detail)"
            " VALUES (%s, %s, %s, %s, %s)",
            (release.id, machine, name, outcome, detail),
        )


async def hand_off(
    context: Context, handoff: Handoff, action: str, subject: int, by: str, say: Say
) -> None:
    """This process's machine is being replaced onto the release: queue the rest of the
    run (same request, same messages) for the process that replaces it."""
    assert context.defer is not None  # a worker runs this, and a worker has the queue
    async with context.pool.connection() as conn, conn.transaction():
        await context.defer(conn, action=action, subject=subject, by=by,
                            conversation=say.conversation, rid=say.rid, admin=say.admin,
                            handoffs=say.handoffs + 1, after=HANDOFF_SECONDS)  # fmt: skip
        detail = {"machine": handoff.machine, "moved": handoff.moved}
        await audit.record(conn, actor="persais", action=f"{action}.handed_off",
                           subject=f"{action}:{subject}", detail=detail)  # fmt: skip
    await say.progress(
        f"🚀 machine {handoff.machine} (this one) is restarting on the release; "
        f"it finishes the {action} when it is back…"
    )
