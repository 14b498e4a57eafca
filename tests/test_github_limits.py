"""The limits Persais keeps with GitHub: content-creating requests throttled per
installation, and the sweep that asks GitHub to redeliver what failed."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from app.github.client import GitHubApp
from app.github.redeliver import Sweep, sweep
from app.github.throttle import ContentThrottler
from app.settings import load_settings
from tests.support.fake_github import APP_ID, app_key_pair, fake_github
from tests.support.pools import open_pool

PRIVATE, PUBLIC = app_key_pair()


def test_content_requests_wait_for_the_window_reads_do_not() -> None:
    throttler = ContentThrottler(limit=3, window=0.6)
    post = httpx.Request("POST", "https://api.github.com/repos/o/r/issues/1/comments")
    get = httpx.Request("GET", "https://api.github.com/repos/o/r/pulls/1")
    token = httpx.Request("POST", "https://api.github.com/app/installations/7/access_tokens")

    async def send(request: httpx.Request) -> float:
        async with throttler.async_acquire(request):
            return time.monotonic()

    async def run() -> tuple[list[float], list[float]]:
        start = time.monotonic()
        writes = [await send(post) for _ in range(4)]
        reads = [await send(get) for _ in range(10)] + [await send(token) for _ in range(5)]
        return [t - start for t in writes], [t - start for t in reads]

    writes, reads = asyncio.run(run())
    assert writes[2] < 0.3  # three go at once
    assert writes[3] >= 0.55  # the fourth waits for the first to leave the window
    assert max(reads) - writes[3] < 0.3  # reads and token requests never wait
    assert throttler.waited >= 0.5


def test_each_installation_has_its_own_throttle() -> None:
    settings = load_settings(
        None, GITHUB_APP_ID=APP_ID, GITHUB_PRIVATE_KEY=PRIVATE, GITHUB_API_URL="http://127.0.0.1:9"
    )
    app = GitHubApp(settings)
    one, two = app.installation(1), app.installation(2)
    assert one is app.installation(1)
    assert isinstance(one.config.throttler, ContentThrottler)
    assert one.config.throttler is not two.config.throttler
    assert one.config.throttler.limit < 80


def test_the_sweep_redelivers_failures_of_the_last_three_days_not_in_the_inbox(
    database: str, sql: Any
) -> None:
    now = datetime.now(UTC)
    with fake_github(PUBLIC) as (url, fake):
        fake.add_repo("octo/widgets", 77, files={"README.md": "hi\n"})
        for n in range(150):  # a busy App: the failures are on the second page
            fake.add_delivery(f"ok-{n}", "push", delivered_at=now - timedelta(minutes=n))
        lost = fake.add_delivery("lost", "pull_request", action="opened", status_code=502,
                                 delivered_at=now - timedelta(hours=5))  # fmt: skip
        fake.add_delivery("stored", "issue_comment", status_code=504,
                          delivered_at=now - timedelta(hours=6))  # fmt: skip
        fake.add_delivery("healed", "push", status_code=500, delivered_at=now - timedelta(hours=8))
        fake.add_delivery("healed", "push", redelivery=True, delivered_at=now - timedelta(hours=7))
        for n in range(4):  # failed every time: we stop asking
            fake.add_delivery("hopeless", "push", status_code=500, redelivery=n > 0,
                              delivered_at=now - timedelta(hours=10 + n))  # fmt: skip
        fake.add_delivery("ancient", "push", status_code=500, delivered_at=now - timedelta(days=4))
        sql("INSERT INTO inbox (source, delivery_id, event, payload)"
            " VALUES ('github', 'stored', 'issue_comment', '{}')")  # fmt: skip
        settings = load_settings(
            None, GITHUB_APP_ID=APP_ID, GITHUB_PRIVATE_KEY=PRIVATE, GITHUB_API_URL=url
        )

        async def run() -> tuple[Sweep, Sweep]:
            async with open_pool(database, max_size=3) as pool:
                app = GitHubApp(settings)
                return await sweep(app, pool), await sweep(app, pool)

        first, second = asyncio.run(run())
        assert first.redelivered == ["lost"]
        assert fake.redelivered == [lost]  # asked once, by the failed attempt's id
        assert second.redelivered == []  # the same failed attempt is not asked for again
        pages = [c for c in fake.calls if c.path == "/app/hook/deliveries"]
        assert len(pages) == 4  # two sweeps, two pages each: the listing stops at 3 days
        assert {c.auth for c in pages} == {"jwt"}
    assert sql("SELECT subject FROM audit_log WHERE action = 'github.redelivery'") == [
        ("delivery:lost",)
    ]
