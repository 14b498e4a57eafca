"""The fake Fly Machines API answers in Fly's shapes: machines, leases, updates that boot the
machine, `wait` long polls, the per-machine rate limit, and each machine's `/ready`."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.fake_fly import FakeFly, fake_fly

AUTH = {"Authorization": "Bearer fly-test-token"}
MACHINES = "/v1/apps/persais/machines"
NONCE = "fly-machine-lease-nonce"


@pytest.fixture
def fly() -> Iterator[tuple[httpx.Client, FakeFly]]:
    with fake_fly(boot_seconds=0.05) as (url, fake), httpx.Client(base_url=url, headers=AUTH) as c:
        fake.min_interval = 0.0
        yield c, fake


def release_config(fake: FakeFly, machine_id: str, sha: str) -> dict[str, Any]:
    config = dict(fake.machines[machine_id].config)
    config["env"] = {**fake.env(machine_id), "PERSAIS_RELEASE": sha}
    return config


def lease(client: httpx.Client, machine_id: str) -> str:
    answer = client.post(f"{MACHINES}/{machine_id}/lease", json={"ttl": 30, "description": "t"})
    assert answer.status_code == 200, answer.text
    return str(answer.json()["data"]["nonce"])


def test_list_and_get_answer_machines_in_flys_shape(fly: tuple[httpx.Client, FakeFly]) -> None:
    client, fake = fly
    listed = client.get(MACHINES)
    assert listed.status_code == 200
    machines = listed.json()
    assert [m["id"] for m in machines] == list(fake.machines)
    assert len(machines) == 3
    for i, machine in enumerate(machines):
        assert re.fullmatch(r"[0-9a-f]{14}", machine["id"])
        assert re.fullmatch(r"[0-9A-Z]{26}", machine["instance_id"])
        assert machine["state"] == "started"
        assert machine["region"] == "ams"
        assert machine["private_ip"] == f"127.0.0.{2 + i}"
        assert machine["config"]["image"] == "registry.fly.io/persais:deployment-1"
        assert machine["config"]["env"] == {"PERSAIS_HOME": "/data"}
        assert machine["config"]["metadata"] == {"fly_process_group": "worker"}
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", machine["created_at"])
    one = client.get(f"{MACHINES}/{machines[1]['id']}")
    assert one.status_code == 200
    assert one.json() == machines[1]
    assert client.get(f"{MACHINES}/0123456789abcd").status_code == 404
    assert client.get("/v1/apps/other/machines").json() == {"error": "not found"}
    assert len(fake.boots) == 3  # every machine booted once at start
    assert fake.count("get") == 2
    assert fake.count("list") == 2


def test_requests_without_the_token_are_unauthorized(fly: tuple[httpx.Client, FakeFly]) -> None:
    client, fake = fly
    for headers in ({"Authorization": ""}, {"Authorization": "Bearer wrong"}):
        answer = client.get(MACHINES, headers=headers)
        assert answer.status_code == 401
        assert answer.json() == {"error": "unauthorized"}
    assert [r.status for r in fake.requests] == [401, 401]


def test_a_leased_update_boots_the_new_release(fly: tuple[httpx.Client, FakeFly]) -> None:
    client, fake = fly
    machine_id = next(iter(fake.machines))
    before = fake.machines[machine_id].instance_id
    nonce = lease(client, machine_id)
    nonced = {NONCE: nonce}
    config = release_config(fake, machine_id, "abc123")

    updated = client.post(f"{MACHINES}/{machine_id}", json={"config": config}, headers=nonced)
    assert updated.status_code == 200, updated.text
    assert updated.json()["state"] == "replacing"
    instance_id = updated.json()["instance_id"]
    assert instance_id != before
    waited = client.get(
        f"{MACHINES}/{machine_id}/wait",
        params={"state": "started", "timeout": 5, "instance_id": instance_id},
        timeout=10,
    )
    assert waited.status_code == 200
    assert waited.json() == {"ok": True}
    ready = httpx.get(fake.ready_url(machine_id))
    assert fake.ready_url(machine_id).startswith(f"http://{updated.json()['private_ip']}:")
    assert ready.status_code == 200
    assert ready.json()["release"] == {"sha": "abc123"}
    assert fake.updates == [(machine_id, config["env"])]
    assert fake.boots[-1] == (machine_id, config["env"])
    released = client.delete(f"{MACHINES}/{machine_id}/lease", headers=nonced)
    assert released.json() == {"status": "success"}


def test_leases_guard_the_machine(fly: tuple[httpx.Client, FakeFly]) -> None:
    client, fake = fly
    machine_id = next(iter(fake.machines))
    nonce = lease(client, machine_id)
    config = release_config(fake, machine_id, "def456")

    update = client.post(f"{MACHINES}/{machine_id}", json={"config": config})
    assert update.status_code == 412
    assert update.json() == {"error": "lease mismatch: machine is leased by someone else"}
    second = client.post(f"{MACHINES}/{machine_id}/lease", json={"ttl": 30})
    assert second.status_code == 409
    assert second.json()["error"].startswith("failed to create lease: lease currently held by")
    wrong = client.delete(f"{MACHINES}/{machine_id}/lease", headers={NONCE: "x"})
    assert wrong.status_code == 409
    assert wrong.json() == {"error": "lease nonce mismatch"}
    path = f"{MACHINES}/{machine_id}"
    renewed = client.post(f"{path}/lease", json={"ttl": 30}, headers={NONCE: nonce})
    assert renewed.status_code == 200
    assert renewed.json()["data"]["nonce"] == nonce
    no_config = client.post(path, json={"region": "ams"}, headers={NONCE: nonce})
    assert no_config.status_code == 400
    assert fake.updates == []


def test_a_machine_that_never_starts_times_the_wait_out(fly: tuple[httpx.Client, FakeFly]) -> None:
    client, fake = fly
    machine_id = list(fake.machines)[2]
    fake.never_start(machine_id)
    config = release_config(fake, machine_id, "bad")
    assert client.post(f"{MACHINES}/{machine_id}", json={"config": config}).status_code == 200

    wait = f"{MACHINES}/{machine_id}/wait"
    waited = client.get(wait, params={"state": "started", "timeout": 0.3})
    assert waited.status_code == 408
    assert waited.json() == {"error": "deadline_exceeded: machine did not reach state started"}
    assert fake.machines[machine_id].state == "starting"
    assert httpx.get(fake.ready_url(machine_id)).status_code == 503
    assert client.get(wait, params={"state": "nope"}).status_code == 400


def test_the_rate_limit_is_per_machine_and_action() -> None:
    with fake_fly(boot_seconds=0.05) as (url, fake), httpx.Client(base_url=url, headers=AUTH) as c:
        first, second = list(fake.machines)[:2]
        body = {"config": release_config(fake, first, "r1")}
        assert c.post(f"{MACHINES}/{first}", json=body).status_code == 200
        again = c.post(f"{MACHINES}/{first}", json=body)
        assert again.status_code == 429
        assert again.headers["Retry-After"] == "1"
        assert again.json() == {"error": "rate limit exceeded"}
        other = {"config": release_config(fake, second, "r1")}
        assert c.post(f"{MACHINES}/{second}", json=other).status_code == 200
        assert c.get(f"{MACHINES}/{first}").status_code == 200  # another action
        assert fake.rate_limited == [(first, "update")]
        assert [u[0] for u in fake.updates] == [first, second]


def test_a_boot_that_raises_fails_the_machine() -> None:
    def boot(machine_id: str, env: dict[str, str]) -> dict[str, Any]:
        if env.get("PERSAIS_RELEASE") == "broken":
            raise RuntimeError("agents failed to load")
        return {"ready": True}

    with (
        fake_fly(machines=1, boot=boot, boot_seconds=0.05) as (url, fake),
        httpx.Client(base_url=url, headers=AUTH) as client,
    ):
        fake.min_interval = 0.0
        machine_id = next(iter(fake.machines))
        assert httpx.get(fake.ready_url(machine_id)).json() == {"ready": True}
        config = release_config(fake, machine_id, "broken")
        assert client.post(f"{MACHINES}/{machine_id}", json={"config": config}).status_code == 200
        waited = client.get(f"{MACHINES}/{machine_id}/wait", params={"timeout": "1"})
        assert waited.status_code == 408
        assert client.get(f"{MACHINES}/{machine_id}").json()["state"] == "failed"
        ready = httpx.get(fake.ready_url(machine_id))
        assert ready.status_code == 503
        assert ready.json()["ready"] is False
        assert "agents failed to load" in ready.json()["error"]
