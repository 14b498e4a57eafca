"""Deploy on Fly.io: the Fly deployer against a local fake of the Machines API (leases and
nonces, update, `/wait` with its 408, the 1 request/s limit), each fake machine booting the
release the way a Persais machine does (our sync and registry) and reporting it on /ready."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.settings import CHECKOUT_ROOT, Settings
from tests.support.config import make_settings
from tests.support.deploys import ECHO, machine_boot, mechanic_pull, outcome, persais, press_deploy
from tests.support.fake_fly import FLY_TOKEN, FakeFly, fake_fly


@pytest.fixture
def fly(tmp_path: Path) -> Iterator[tuple[str, FakeFly]]:
    bare = tmp_path / "home" / "forge" / "persais.git"
    boot = machine_boot(bare, tmp_path / "machines", CHECKOUT_ROOT / "dynamic" / "agents")
    with fake_fly(machines=3, boot=boot, boot_seconds=0.1) as served:
        yield served


def fly_settings(tmp_path: Path, database: str, base: str, fake: FakeFly, **extra: str) -> Settings:
    return make_settings(
        tmp_path / "home", database, FLY_API_TOKEN=FLY_TOKEN, FLY_APP_NAME="persais",
        FLY_API_URL=base, PERSAIS_FLY_READY_PORT=fake.ready_port,
        PERSAIS_DEPLOY_TIMEOUT_SECONDS=3, **extra,
    )  # fmt: skip


async def deploy_echo(settings: Settings, database: str) -> str:
    async with persais(settings, database) as convo:
        job, _, _ = await mechanic_pull(convo, settings, ECHO)
        await press_deploy(convo, job)
        return await outcome(convo)


def test_deploy_moves_every_machine_to_the_release(
    tmp_path: Path, database: str, fly: tuple[str, FakeFly], sql
) -> None:
    base, fake = fly
    settings = fly_settings(tmp_path, database, base, fake)

    result = asyncio.run(deploy_echo(settings, database))
    ((sha,),) = sql("SELECT sha FROM releases WHERE source = 'merge'")
    assert result == f"✅ release 2 ({sha[:12]}, PR #1) is live: /echo answering."
    for machine in fake.machines.values():
        assert fake.env(machine.id)["PERSAIS_RELEASE"] == sha
        assert machine.state == "started"
        assert [a["name"] for a in machine.ready["agents"]["loaded"]] == ["echo"]
        assert machine.lease is None or not machine.lease.held()
    assert fake.rate_limited == []
    assert [m for m, _ in fake.updates] == list(fake.machines)  # one at a time, in order
    assert fake.count("lease") == fake.count("update") == fake.count("release") == 3
    assert sql("SELECT status FROM release_events WHERE release = 2 ORDER BY id") == [
        ("cut",),
        ("loading",),
        ("live",),
    ]


def test_a_machine_that_never_starts_stops_the_deploy_and_the_moved_go_back(
    tmp_path: Path, database: str, fly: tuple[str, FakeFly], sql
) -> None:
    base, fake = fly
    settings = fly_settings(tmp_path, database, base, fake)
    first, second, _third = list(fake.machines)
    fake.never_start(second)

    result = asyncio.run(deploy_echo(settings, database))
    assert result.startswith("✗ release 2 (")
    assert f"({second}): did not start within 3 s (2 machine(s) put back)" in result
    assert "stays in service" in result
    # The first machine went to the release and back; the second was moved and put back;
    # the third was never touched.
    ((sha,),) = sql("SELECT sha FROM releases WHERE source = 'merge'")
    moves = [(m, env.get("PERSAIS_RELEASE")) for m, env in fake.updates]
    assert moves == [(first, sha), (second, sha), (second, None), (first, None)]
    for machine in fake.machines.values():
        assert "PERSAIS_RELEASE" not in fake.env(machine.id)
        assert machine.state == "started"
    assert fake.rate_limited == []
    assert sql("SELECT status FROM release_events WHERE release = 2 ORDER BY id") == [
        ("cut",),
        ("loading",),
        ("failed",),
    ]
    assert sql("SELECT status FROM release_events WHERE release = 1") == [("live",)]


def test_rollback_on_fly_puts_every_machine_back(
    tmp_path: Path, database: str, fly: tuple[str, FakeFly], sql
) -> None:
    base, fake = fly
    settings = fly_settings(tmp_path, database, base, fake)

    async def run() -> str:
        async with persais(settings, database) as convo:
            job, _, _ = await mechanic_pull(convo, settings, ECHO)
            await press_deploy(convo, job)
            assert "is live" in await outcome(convo)
            offer = await convo.deployments.offer_rollback("cli:ada")
            question = await convo.orchestrator.ask(
                "cli:ada", "rollback", offer, requested_by="cli:ada"
            )
            await convo.orchestrator.press(question.id, "rollback", user="cli:ada", admin=True)
            return await outcome(convo)

    result = asyncio.run(run())
    assert result.startswith("↩ Rolled back: release 1 (image ")
    for machine in fake.machines.values():
        assert "PERSAIS_RELEASE" not in fake.env(machine.id)
        assert machine.ready["release"]["sha"] is None
    assert fake.rate_limited == []
    assert sql("SELECT release, status FROM release_events ORDER BY id DESC LIMIT 2") == [
        (1, "live"),
        (2, "rolled_back"),
    ]


def test_the_deploying_process_hands_its_machine_over_to_its_replacement(
    tmp_path: Path, database: str, fly: tuple[str, FakeFly], sql
) -> None:
    base, fake = fly
    first, second, own = list(fake.machines)
    settings = fly_settings(tmp_path, database, base, fake, FLY_MACHINE_ID=own)

    async def replaced() -> str:
        # The deploying process updates its own machine last and stops there...
        async with persais(settings, database) as convo:
            job, _, _ = await mechanic_pull(convo, settings, ECHO)
            await press_deploy(convo, job)
            for _ in range(600):
                if sql("SELECT 1 FROM audit_log WHERE action = 'deploy.handed_off'"):
                    break
                await asyncio.sleep(0.05)
        # ...and the process Fly starts on the release finishes it.
        ((sha,),) = sql("SELECT sha FROM releases WHERE source = 'merge'")
        again = fly_settings(tmp_path, database, base, fake, FLY_MACHINE_ID=own,
                             PERSAIS_RELEASE=sha)  # fmt: skip
        async with persais(again, database) as convo:
            return await outcome(convo)

    result = asyncio.run(replaced())
    ((sha,),) = sql("SELECT sha FROM releases WHERE source = 'merge'")
    assert result == f"✅ release 2 ({sha[:12]}, PR #1) is live: /echo answering."
    assert [m for m, _ in fake.updates] == [first, second, own]  # each updated once
    assert sql("SELECT status FROM release_events WHERE release = 2 ORDER BY id") == [
        ("cut",), ("loading",), ("loading",), ("live",),
    ]  # fmt: skip
    assert fake.rate_limited == []


def test_a_deploying_process_never_replaced_gives_up_and_puts_every_machine_back(
    tmp_path: Path, database: str, fly: tuple[str, FakeFly], sql
) -> None:
    base, fake = fly
    first, second, own = list(fake.machines)
    settings = fly_settings(tmp_path, database, base, fake, FLY_MACHINE_ID=own)

    result = asyncio.run(deploy_echo(settings, database))
    assert result.startswith("✗ release 2 (")
    assert "it was updated, but this process was not replaced (3 machine(s) put back)" in result
    ((sha,),) = sql("SELECT sha FROM releases WHERE source = 'merge'")
    moves = [(m, env.get("PERSAIS_RELEASE")) for m, env in fake.updates]
    assert moves == [(first, sha), (second, sha), (own, sha),
                     (own, None), (second, None), (first, None)]  # fmt: skip
    assert sql("SELECT count(*) FROM audit_log WHERE action = 'deploy.handed_off'") == [(1,)]


def test_a_worker_still_starting_is_not_ready_for_any_release() -> None:
    import httpx

    from app.deploy.fly import readiness_problem

    starting = {"release": {"sha": None, "source": "starting"}, "agents": {"loaded": []}}
    response = httpx.Response(200, json=starting)
    assert readiness_problem(response, "", set()) == "starting (the release is not synced yet)"
    web = {"release": {"sha": "a" * 40, "source": "setting"}, "agents": {"loaded": None}}
    assert readiness_problem(httpx.Response(200, json=web), "a" * 40, {"echo"}) is None
