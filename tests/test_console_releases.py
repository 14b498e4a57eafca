"""The console's Releases page: the ledger, a release's changes, grants and machines, and
Deploy / Roll back — the chat's own deploy task, asked from the console."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.testclient import TestClient

from app.agents import metering
from app.console.site import mount
from app.console.web import Console
from app.runtime import Runtime
from app.settings import CHECKOUT_ROOT, Settings
from app.worker.queue import DEPLOY_TASK, MECHANIC_QUEUE
from tests.support.config import make_settings
from tests.support.console import BASE, console_client, csrf_of, log_in, mint_link
from tests.support.deploys import (
    ECHO,
    machine_boot,
    mechanic_pull,
    outcome,
    persais,
    press_deploy,
    say,
)
from tests.support.fake_fly import FLY_TOKEN, fake_fly

Sql = Callable[..., list[tuple[Any, ...]]]
GRANTS = {"weather": {"http": {"hosts": ["api.open-meteo.com"]}}}


def ledger_of(sql: Sql, count: int) -> None:
    """`count` releases, each cut on the one before and put in service in turn: the last is
    live, the others superseded (release 1 is the image's own)."""
    for number in range(1, count + 1):
        source = "image" if number == 1 else "merge"
        sql(
            "INSERT INTO releases (id, sha, source, repository, pr_number, pressed_by, previous,"
            " grants) VALUES (%s, %s, %s, 'persais', %s, %s, %s, %s)",
            number, f"{number:040x}", source, None if number == 1 else number, "cli:ada",
            None if number == 1 else number - 1, json.dumps({}),
        )  # fmt: skip
        if number > 1:
            sql("INSERT INTO release_events (release, status, actor) VALUES (%s - 1,"
                " 'superseded', 'persais')", number)  # fmt: skip
        sql("INSERT INTO release_events (release, status, actor) VALUES (%s, 'live', 'cli:ada')",
            number)  # fmt: skip
    sql("SELECT setval('releases_id_seq', %s)", count)


def rows_of(html: str) -> list[str]:
    table = html[html.index('<table id="releases">') :]
    return re.findall(
        r'<a href="/console/releases/(\d+)">release', table[: table.index("</table>")]
    )


def deploy_jobs(sql: Sql) -> list[dict[str, Any]]:
    return [args for (args,) in sql(
        "SELECT args FROM procrastinate_jobs WHERE task_name = %s ORDER BY id", DEPLOY_TASK
    )]  # fmt: skip


@contextmanager
def with_queue(settings: Settings, database: str) -> Iterator[TestClient]:
    """A console over a process's worker queue (not working it): actions defer real jobs."""
    runtime = Runtime(settings, database)
    with console_client(settings, database, runtime=runtime) as client:
        console: Console = client.app.state.console  # type: ignore[attr-defined]
        assert client.portal is not None
        client.portal.call(runtime.queue.open, console.pool)
        yield client


def test_the_ledger_is_newest_first_paged_and_marks_the_release_in_service(
    settings: Settings, database: str, sql: Sql
) -> None:
    ledger_of(sql, 25)
    with with_queue(settings, database) as client:
        log_in(client, database, "cli:ada", "admin")
        page = client.get("/console/releases")
        assert page.status_code == 200
        assert rows_of(page.text) == [str(n) for n in range(25, 5, -1)]
        live = re.search(r'<tr class="live">(.*?)</tr>', page.text, re.S)
        assert live is not None
        assert "release 25" in live.group(1)
        assert "live" in live.group(1)
        assert page.text.count('<tr class="live">') == 1
        # No rollback on the live one; one on each good release before it (as far as 20 back).
        assert "Roll back to release 25" not in page.text
        form = re.search(
            r'<form class="inline" method="post" action="/console/releases/24/rollback"'
            r' data-confirm="Roll back to release 24\?">(.*?)</form>', page.text, re.S,
        )  # fmt: skip
        assert form is not None
        assert f'name="csrf" value="{csrf_of(page.text)}"' in form.group(1)
        assert 'name="live" value="25"' in form.group(1)
        assert ">Roll back to release 24</button>" in form.group(1)
        assert ">Roll back to release 6</button>" in page.text
        older = client.get("/console/releases?before=6")
        assert rows_of(older.text) == ["5", "4", "3", "2", "1"]
        assert "Older" not in older.text
        assert "image" in older.text
        assert ">Roll back to release 5</button>" in older.text  # 20 steps back
        assert ">Roll back to release 4</button>" not in older.text  # beyond 20 steps
    with with_queue(settings, database) as reader:
        log_in(reader, database, "cli:bob", "reader")
        page = reader.get("/console/releases")
        assert page.status_code == 200
        assert "Roll back to release" not in page.text
        assert '<tr class="live">' in page.text


def _forge_with_two_commits(settings: Settings) -> tuple[str, str]:
    """The local forge's bare repository, with echo and old, then echo changed, old gone and
    weather new."""
    bare = settings.home / "forge" / "persais.git"
    bare.parent.mkdir(parents=True, exist_ok=True)
    work = settings.home / "work"

    def git(*args: str, cwd: Path = work) -> str:
        return subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args], cwd=cwd,
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip

    work.mkdir(parents=True)
    git("init", "-q", "-b", "main")
    for name in ("echo", "old"):
        (work / f"dynamic/agents/{name}").mkdir(parents=True)
        (work / f"dynamic/agents/{name}/agent.toml").write_text(f'name = "{name}"\n')
        (work / f"dynamic/agents/{name}/agent.py").write_text("# one\n")
    git("add", "-A")
    git("commit", "-qm", "one")
    first = git("rev-parse", "HEAD")
    (work / "dynamic/agents/echo/agent.py").write_text("# two\n")
    git("rm", "-rq", "dynamic/agents/old")
    (work / "dynamic/agents/weather").mkdir(parents=True)
    (work / "dynamic/agents/weather/agent.toml").write_text('name = "weather"\n')
    (work / "README.md").write_text("not an agent\n")
    git("add", "-A")
    git("commit", "-qm", "two")
    second = git("rev-parse", "HEAD")
    git("clone", "-q", "--bare", str(work), str(bare), cwd=settings.home)
    return first, second


def test_a_release_shows_what_changed_its_grants_and_each_machine(
    settings: Settings, database: str, sql: Sql
) -> None:
    first, second = _forge_with_two_commits(settings)
    sql("INSERT INTO releases (sha, source, repository, pressed_by, grants) VALUES"
        " (%s, 'image', 'persais', 'persais', %s)", first,
        json.dumps({"echo": {}, "old": {}}))  # fmt: skip
    sql("INSERT INTO releases (sha, source, repository, pr_number, job_id, pressed_by,"
        " conversation, previous, grants) VALUES (%s, 'merge', 'persais', 7, 'j7', 'tg:42',"
        " 'tg:42', 1, %s)", second, json.dumps({"echo": {}, **GRANTS}))  # fmt: skip
    # A third cut on it, whose commit the forge does not have: the ledger alone answers.
    sql("INSERT INTO releases (sha, source, repository, pr_number, pressed_by, previous, grants)"
        " VALUES (%s, 'merge', 'persais', 8, 'cli:ada', 2, %s)", "f" * 40,
        json.dumps({"echo": {}, "newcomer": {}}))  # fmt: skip
    for release, status, reason in [
        (1, "live", "the image's own agents"), (2, "cut", None), (2, "loading", None),
        (1, "superseded", None), (2, "live", None), (3, "cut", None),
        (3, "failed", "<script>alert(1)</script> did not load"),
    ]:  # fmt: skip
        sql("INSERT INTO release_events (release, status, actor, reason) VALUES (%s, %s,"
            " 'persais', %s)", release, status, reason)  # fmt: skip
    for machine, outcome_, detail in [
        ("m1", "updating", second),
        ("m1", "on", second),
        ("m2", "failed", "did not start"),
    ]:
        sql("INSERT INTO release_machines (release, machine, name, outcome, detail) VALUES"
            " (2, %s, %s, %s, %s)", machine, f"web-{machine}", outcome_, detail)  # fmt: skip
    with with_queue(settings, database) as client:
        log_in(client, database, "cli:ada", "admin")
        page = client.get("/console/releases/2")
        assert page.status_code == 200
        text = page.text
        assert "release 2 (" in text
        assert "added: weather" in text
        assert "changed: echo" in text
        assert "removed: old" in text
        assert "README" not in text
        assert "weather: http → api.open-meteo.com" in text
        assert "🔑 weather: http → api.open-meteo.com (new)" in text
        assert "tg:42" in text
        assert '<a href="/console/pulls/7">#7</a>' in text
        assert '<a href="/console/jobs/j7">j7</a>' in text
        machines = text[text.index('<table id="machines">') :]
        assert "web-m1" in machines
        assert "web-m2" in machines
        assert ">failed</td><td>did not start" in machines
        assert ">on</td>" in machines
        events = text[text.index('<table id="events">') : text.index('<table id="machines">')]
        assert re.findall(r'class="state-(\w+)"', events) == ["cut", "loading", "live"]
        # Release 2 is live: nothing to roll back to from its own page.
        assert "Roll back to release" not in text
        image = client.get("/console/releases/1").text
        assert ">Roll back to release 1</button>" in image
        assert "the first release" in image
        third = client.get("/console/releases/3")
        assert "added: newcomer" in third.text
        assert "removed: weather" in third.text
        assert "Compared with the ledger" in third.text
        assert "<script>alert(1)</script>" not in third.text
        assert "&lt;script&gt;alert(1)&lt;/script&gt; did not load" in third.text
        assert "Roll back to release 3" not in third.text  # it failed: never a target
        assert "No Fly machine" in third.text
        missing = client.get("/console/releases/99")
        assert missing.status_code == 404
        assert "no release 99" in missing.text


def test_a_stranger_sees_no_release_and_can_press_nothing(
    settings: Settings, database: str, sql: Sql
) -> None:
    ledger_of(sql, 3)
    with with_queue(settings, database) as client:
        for path in ("/console/releases", "/console/releases/2", "/console/releases?before=3"):
            answer = client.get(path)
            assert answer.status_code == 401
            assert "release 2" not in answer.text
            assert f"{2:040x}"[:12] not in answer.text
        refused = client.post("/console/releases/2/rollback", data={"csrf": "x", "live": "3"})
        assert refused.status_code == 401
        assert client.post("/console/releases/deploy/1", data={"csrf": "x"}).status_code == 401
    assert deploy_jobs(sql) == []


def test_an_admin_rollback_defers_the_chats_deploy_task_and_a_reader_changes_nothing(
    settings: Settings, database: str, sql: Sql
) -> None:
    ledger_of(sql, 4)
    with with_queue(settings, database) as client:
        csrf = log_in(client, database, "cli:bob", "reader")
        answer = client.post("/console/releases/3/rollback", data={"csrf": csrf, "live": "4"})
        assert answer.status_code == 403
        assert deploy_jobs(sql) == []
        assert sql("SELECT count(*) FROM audit_log WHERE action LIKE 'rollback.%%'") == [(0,)]
        assert client.post("/console/releases/deploy/1", data={"csrf": csrf}).status_code == 403
    with with_queue(settings, database) as client:
        csrf = log_in(client, database, "cli:ada", "admin")
        # No CSRF token: refused by the gate, and the refusal audited.
        assert client.post("/console/releases/3/rollback", data={"live": "4"}).status_code == 403
        assert deploy_jobs(sql) == []
        forged = sql(
            "SELECT actor, subject FROM audit_log WHERE action = 'console.forgery_refused'"
        )
        assert forged == [("cli:ada", "/console/releases/3/rollback")]
        # A page shown before the release in service changed: nothing is queued.
        stale = client.post("/console/releases/3/rollback", data={"csrf": csrf, "live": "3"})
        assert stale.status_code == 409
        assert "nothing was rolled back" in stale.text
        assert deploy_jobs(sql) == []
        answer = client.post("/console/releases/3/rollback", data={"csrf": csrf, "live": "4"})
        assert answer.status_code == 303
        assert answer.headers["location"] == "/console/releases#requests"
        ((job,),) = [deploy_jobs(sql)]
        assert job["action"] == "rollback"
        assert job["subject"] == 4  # `/rollback` from the release in service
        assert job["by"] == "cli:ada"
        assert job["conversation"] == "console:cli:ada"
        assert job["admin"] is True
        ((detail,),) = sql("SELECT detail FROM audit_log WHERE action = 'rollback.requested'"
                           " AND actor = 'cli:ada'")  # fmt: skip
        assert detail == {"request": job["rid"], "via": "console", "to": 3}
        # Two releases back: two rollbacks, each from where the one before leaves it.
        client.post("/console/releases/2/rollback", data={"csrf": csrf, "live": "4"})
        assert [(j["action"], j["subject"]) for j in deploy_jobs(sql)[1:]] == [
            ("rollback", 4), ("rollback", 3),
        ]  # fmt: skip
        # The page says the requests are waiting for a worker, and keeps itself fresh.
        page = client.get("/console/releases")
        assert "3 deploy or rollback request(s) queued or running" in page.text
        assert 'hx-trigger="every 1s"' in page.text
        # Not a good release before the live one: nothing queued.
        sql("INSERT INTO release_events (release, status, actor) VALUES (1, 'failed', 'x')")
        bad = client.post("/console/releases/1/rollback", data={"csrf": csrf, "live": "4"})
        assert bad.status_code == 409
        assert len(deploy_jobs(sql)) == 3
        # A pull request the Mechanic did not validate is not deployed.
        nothing = client.post("/console/releases/deploy/5", data={"csrf": csrf})
        assert nothing.status_code == 409
        assert len(deploy_jobs(sql)) == 3


def test_a_bare_console_has_no_queue_and_offers_no_button(
    settings: Settings, database: str, sql: Sql
) -> None:
    ledger_of(sql, 2)
    with console_client(settings, database) as client:
        csrf = log_in(client, database, "cli:ada", "admin")
        assert "Roll back to release" not in client.get("/console/releases").text
        answer = client.post("/console/releases/1/rollback", data={"csrf": csrf, "live": "2"})
        assert answer.status_code == 409
        assert "no worker queue" in answer.text
    assert deploy_jobs(sql) == []


async def _wait_for(convo: Any, conversation: str, text: str) -> str:
    said = await outcome(convo, conversation)
    assert text in said, said
    return said


def test_deploy_and_roll_back_from_the_console_end_to_end(
    settings: Settings, database: str, sql: Sql
) -> None:
    """A Mechanic pull request waits to deploy; an admin deploys it and rolls it back from
    the console, through the chat's own deploy task, run by a real worker."""

    async def run() -> None:
        runtime = Runtime(settings, database)
        runtime.worker_queues = (MECHANIC_QUEUE,)
        await runtime.start(worker=True)
        try:
            convo = await runtime.conversations()
            _, number, head = await mechanic_pull(convo, settings, ECHO)
            console = Console(pool=runtime.pool, settings=settings, runtime=runtime)
            app = Starlette(routes=[mount(console)])
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
                token = mint_link(database, "cli:ada", "admin")
                assert (await client.get(f"/console/login/{token}")).status_code == 303
                page = (await client.get("/console/releases")).text
                assert f"#{number}</a> waiting to deploy" in page
                assert head[:12] in page
                csrf = csrf_of(page)
                pressed = await client.post(f"/console/releases/deploy/{number}",
                                            data={"csrf": csrf})  # fmt: skip
                assert pressed.status_code == 303
                live = await _wait_for(convo, "console:cli:ada", "is live: /echo answering")
                assert live.startswith("✅ release 2 (")
                before = metering.figures().get("echo")
                assert await say(convo, "/echo Hello") == ["Echo: Hello"]
                answers = (before.answers if before else 0) + 1
                errors = before.errors if before else 0
                page = (await client.get("/console/releases")).text
                row = re.search(r'<tr class="live">(.*?)</tr>', page, re.S)
                assert row is not None
                assert "release 2" in row.group(1)
                assert "is live: /echo answering" in page  # what the deploy said
                assert "waiting to deploy" not in page
                assert ">Roll back to release 1</button>" in page
                agents = (await client.get("/console/agents")).text
                echo = re.search(r"<tr class=\"loaded\">\s*<th scope=\"row\">echo(.*?)</tr>",
                                 agents, re.S)  # fmt: skip
                assert echo is not None
                assert "<code>/echo</code>" in echo.group(1)
                assert re.search(r"bubblewrap sandbox|unsandboxed", echo.group(1))
                assert f"<td>{answers}</td><td>{errors}</td>" in echo.group(1)
                rolled = await client.post("/console/releases/1/rollback",
                                           data={"csrf": csrf, "live": "2"})  # fmt: skip
                assert rolled.status_code == 303
                back = await _wait_for(convo, "console:cli:ada", "↩ Rolled back: release 1")
                assert f"The revert of #{number} is merged" in back
                assert (await say(convo, "/echo Hello"))[0].startswith("Unknown command /echo")
                page = (await client.get("/console/releases")).text
                row = re.search(r'<tr class="live">(.*?)</tr>', page, re.S)
                assert row is not None
                assert "release 1" in row.group(1)
                assert "rolled back" in page
        finally:
            await runtime.stop()

    asyncio.run(run())
    requested = sql("SELECT action, actor, detail->>'via' FROM audit_log WHERE action IN"
                    " ('deploy.requested', 'rollback.requested') ORDER BY id")  # fmt: skip
    assert requested == [
        ("deploy.requested", "cli:ada", "console"), ("rollback.requested", "cli:ada", "console"),
    ]  # fmt: skip
    assert sql("SELECT actor FROM audit_log WHERE action = 'release.rolled_back'") == [("cli:ada",)]
    assert sql("SELECT count(*) FROM audit_log WHERE action = 'release.reverted'") == [(1,)]
    assert sql("SELECT pressed_by, conversation FROM releases WHERE id = 2") == [
        ("cli:ada", "console:cli:ada")
    ]
    # What the console showed is marked shown (retention may prune it like any shown row).
    assert sql("SELECT count(*) FROM outbox WHERE conversation = 'console:cli:ada'"
               " AND delivered_version < version AND key LIKE 'deploy:%%'") == [(0,)]  # fmt: skip


def test_a_fly_deploy_shows_how_it_went_on_each_machine(
    tmp_path: Path, database: str, sql: Sql
) -> None:
    """The Fly deployer records each machine's outcome; the release page lists them."""
    bare = tmp_path / "home" / "forge" / "persais.git"
    boot = machine_boot(bare, tmp_path / "machines", CHECKOUT_ROOT / "dynamic" / "agents")
    with fake_fly(machines=3, boot=boot, boot_seconds=0.1) as (base, fake):
        settings = make_settings(
            tmp_path / "home", database, FLY_API_TOKEN=FLY_TOKEN, FLY_APP_NAME="persais",
            FLY_API_URL=base, PERSAIS_FLY_READY_PORT=fake.ready_port,
            PERSAIS_DEPLOY_TIMEOUT_SECONDS=3,
        )  # fmt: skip
        first, second, third = list(fake.machines)
        fake.never_start(second)

        async def deploy() -> str:
            async with persais(settings, database) as convo:
                job, _, _ = await mechanic_pull(convo, settings, ECHO)
                await press_deploy(convo, job)
                return await outcome(convo)

        assert asyncio.run(deploy()).startswith("✗ release 2 (")
    outcomes = sql("SELECT machine, outcome FROM release_machines WHERE release = 2 ORDER BY id")
    assert outcomes == [
        (first, "updating"), (first, "on"), (second, "updating"), (second, "failed"),
        (second, "updating"), (second, "on"), (second, "put_back"),  # back on the image
        (first, "updating"), (first, "on"), (first, "put_back"),
    ]  # fmt: skip
    assert third not in {machine for machine, _ in outcomes}  # never touched
    with console_client(settings, database) as client:
        log_in(client, database, "cli:bob", "reader")
        page = client.get("/console/releases/2").text
        machines = page[page.index('<table id="machines">') :]
        assert "did not start within 3 s" in machines
        assert ">put back</td>" in machines
        assert f"<code>{first}</code>" in machines
