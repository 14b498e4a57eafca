"""The running parts of one Persais process, composed: pool, queue, dispatcher, worker.

The web server and `persais worker` both build one; constructing it does no I/O,
`start()` opens connections and (optionally) the worker, `stop()` winds them down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from typing import TYPE_CHECKING, Any

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from app import periodic
from app.github import installations, ping
from app.routing import Context, DropDelivery, Event, Router
from app.settings import Settings
from app.warm_up import CONVERSATIONS, GITHUB, TELEGRAM, WarmUp
from app.web.metrics import Metrics
from app.worker.dispatch import Dispatcher
from app.worker.queue import MECHANIC_QUEUE, QUEUE, DeliveryQueue

if TYPE_CHECKING:  # imported on first use: LangGraph, aiogram and githubkit are heavy
    from app.conversations import Conversations
    from app.github.service import GitHubService
    from app.telegram.channel import TelegramChannel
    from app.web.telegram_polling import TelegramPoller

log = logging.getLogger(__name__)
LAST_OUTBOX_SECONDS = 3.0  # stopping: the last round of chat messages, within Fly's kill timeout
SIDECAR_STOP_SECONDS = 5.0  # stopping: a sidecar that outlasts this is named in the log


async def _autocommit(conn: AsyncConnection[Any]) -> None:
    # Each statement commits on its own unless code opens `conn.transaction()`. Set here
    # rather than in connect kwargs: procrastinate opens its LISTEN connection with the
    # pool's kwargs plus its own autocommit=True, and the two would clash.
    await conn.set_autocommit(True)


def build_router() -> Router:
    """Every event handler Persais has, merged."""
    return Router(ping.router, installations.router)


def worker_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class Runtime:
    def __init__(self, settings: Settings, conninfo: str, *, router: Router | None = None) -> None:
        self.settings = settings
        self.conninfo = conninfo
        self.metrics = Metrics()
        self.pool = AsyncConnectionPool(
            conninfo,
            min_size=2,
            max_size=10 + settings.worker_concurrency,
            configure=_autocommit,
            open=False,
            name="persais",
        )
        self.router = router or build_router()
        self.dispatcher = Dispatcher(
            pool=self.pool,
            router=self.router,
            max_attempts=settings.worker_max_attempts,
            metrics=self.metrics,
        )
        self.queue = DeliveryQueue(
            max_attempts=settings.worker_max_attempts,
            retry_base_seconds=settings.worker_retry_base_seconds,
            stalled_seconds=settings.worker_stalled_seconds,
            processor=self.dispatcher.process,
            mechanic=self._run_mechanic_job,
            deploy=self._run_deploy,
            index=self._run_index,
            retention=self._run_retention,
            retention_cron=settings.retention_cron,
        )
        self._worker: asyncio.Task[None] | None = None
        self._opening: asyncio.Future[None] | None = None  # the pool, while `start` opens it
        self.stop_asked = False
        self._sidecars: list[asyncio.Task[None]] = []
        self.poller: TelegramPoller | None = None  # Telegram without a webhook
        self.worker_restarts = 0
        self.approval_sweep_seconds = 2.0  # cheap: an index on the pending questions
        self.outbox_seconds = 0.2  # cheap: a partial index on what is not yet shown
        self.worker_queues: tuple[str, ...] = (QUEUE, MECHANIC_QUEUE)
        self._conversations: Conversations | None = None
        self._telegram: TelegramChannel | None = None
        self._github: GitHubService | None = None
        self._lazy_lock = asyncio.Lock()
        self.warm_up = WarmUp()
        self.github_outbox_seconds = 0.5
        self.follow_seconds = 1.0  # cheap: an index on the live events
        # An answer given in the console (app/console/pages/questions.py stores it).
        self.router.register("answer", source="console")(self._console_answer)
        if settings.telegram_bot_token is not None:
            self.router.register("*", source="telegram")(self._telegram_update)
        if settings.github_app_id is not None:
            self.router.register("pull_request")(self._pull_request)
            for event in ("issue_comment", "pull_request_review_comment"):
                self.router.register(event)(self._comment)
            self.router.register("push")(self._push)
            for event in ("installation", "installation_repositories"):
                self.router.register(event)(self._installed)

    async def conversations(self) -> Conversations:
        """The registry and orchestrator, started on first use (the worker warms them up)."""
        await self.warm_up.imported()
        async with self._lazy_lock:
            if self._conversations is None:
                from app.conversations import Conversations
                from app.version import build_info

                conversations = Conversations(
                    self.settings,
                    self.pool,
                    self.conninfo,
                    build_info(self.settings.git_commit),
                    queue=self.queue,
                )
                await conversations.start()
                self._conversations = conversations
            return self._conversations

    async def telegram(self) -> TelegramChannel:
        conversations = await self.conversations()
        async with self._lazy_lock:
            if self._telegram is None:
                from app.telegram.channel import TelegramChannel

                self._telegram = TelegramChannel(
                    self.settings, self.pool, conversations.orchestrator
                )
            return self._telegram

    async def _telegram_update(self, event: Event, ctx: Context) -> None:
        await (await self.telegram()).feed(event.payload)

    async def _console_answer(self, event: Event, ctx: Context) -> None:
        """A question answered in the console: the same claim as a button press (first answer
        wins), then resumed and told in the question's chat. Only the console's own POST,
        behind its session and CSRF token, writes these deliveries (no webhook can)."""
        payload = event.payload
        fields = (payload.get("approval"), payload.get("choice"), payload.get("person"))
        if not all(isinstance(value, str) and value for value in fields):
            raise DropDelivery("malformed", "a console answer without approval, choice or person")
        approval, choice, person = (str(value) for value in fields)
        orchestrator = (await self.conversations()).orchestrator
        press = await orchestrator.answer(
            approval, choice, user=person, admin=payload.get("admin") is True, via="console"
        )
        log.info("console answer %s to %s by %s: %s", choice, approval, person, press.notice)

    async def github(self) -> GitHubService:
        """The GitHub App's handlers, built on first use (githubkit is heavy)."""
        await self.warm_up.imported()
        async with self._lazy_lock:
            if self._github is None:
                from app.github.service import GitHubService

                self._github = GitHubService(self.settings, self.pool, self.conversations)
            return self._github

    async def _pull_request(self, event: Event, ctx: Context) -> None:
        await (await self.github()).on_pull_request(event)

    async def _comment(self, event: Event, ctx: Context) -> None:
        outcome = await (await self.github()).on_comment(event)
        log.info("GitHub comment in delivery %s: %s", event.delivery_id, outcome)

    async def _push(self, event: Event, ctx: Context) -> None:
        outcome = await (await self.github()).memory.on_push(event)
        log.info("GitHub push in delivery %s: %s", event.delivery_id, outcome)

    async def _installed(self, event: Event, ctx: Context) -> None:
        queued = await (await self.github()).memory.on_installed(event)
        if queued:
            log.info("indexing newly installed repositories: %s", ", ".join(queued))

    async def _deliver_github_outbox(self) -> None:
        """Post in GitHub threads what Mechanic jobs asked from there have to say."""

        async def deliver() -> None:  # GitHub or the database hiccuped: the rows wait
            await (await self.github()).deliver_outbox()

        await periodic.every(self.github_outbox_seconds, deliver, "outbox delivery to GitHub")

    async def _sweep_redeliveries(self) -> None:
        """Ask GitHub again for deliveries that failed (it never retries on its own)."""

        async def sweep() -> None:  # GitHub down: next time
            await (await self.github()).sweep_redeliveries()

        minutes = self.settings.github_redelivery_minutes
        await periodic.every(minutes * 60, sweep, "the redelivery sweep")

    async def _run_mechanic_job(self, job_id: str) -> None:
        await (await self.conversations()).mechanic.run(job_id)

    async def _run_index(self, repository: str) -> None:
        await (await self.conversations()).memory.index(repository)

    async def _run_retention(self) -> None:
        """The periodic prune (`app.retention`), counted in /metrics by what it removed."""
        from app import retention

        outcomes = await retention.run(
            self.pool, retention.Policy.from_settings(self.settings),
            retention.Place.from_settings(self.settings), job_manager=self.queue.app.job_manager,
        )  # fmt: skip
        self.metrics.count_retention(outcomes)

    async def _run_deploy(self, *args: Any) -> None:
        await (await self.conversations()).deployments.run(*args)

    async def _follow_releases(self) -> None:
        """Local deployer, several processes: load the release another process put in
        service (the process that deployed it swapped already)."""

        async def follow() -> None:  # the next look may succeed
            if self._conversations is not None:
                await self._conversations.deployments.here.follow()

        await periodic.every(self.follow_seconds, follow, "following the release in service")

    async def _deliver_outbox(self) -> None:
        """Show in Telegram what workers (here or elsewhere) wrote for Telegram chats."""
        from app import outbox

        async def deliver() -> None:  # Telegram or the database hiccuped: the rows wait
            if self._telegram is not None:
                await outbox.deliver(self.pool, self._telegram.show_note, prefix="tg:")

        await periodic.every(self.outbox_seconds, deliver, "outbox delivery to Telegram")

    async def _last_outbox_round(self) -> None:
        """Stopping: show what the jobs that just finished wrote (a deploy's "this machine
        is restarting" is written moments before Fly stops it). Bounded: the next process
        shows whatever is left, though a progress line may be replaced by then."""
        from app import outbox

        if self._telegram is None or not self.serves_telegram or self.pool.closed:
            return
        try:
            await asyncio.wait_for(
                outbox.deliver(self.pool, self._telegram.show_note, prefix="tg:"),
                LAST_OUTBOX_SECONDS,
            )
        except Exception:  # stopping regardless; the rows wait for the next process
            log.warning("the last outbox round before stopping did not finish", exc_info=True)

    @property
    def serves_telegram(self) -> bool:
        """This process takes Telegram's updates (its worker takes deliveries)."""
        return self.settings.telegram_bot_token is not None and QUEUE in self.worker_queues

    async def _warm_up(self) -> None:
        """Before /ready: see app/warm_up.py (a failure is logged there, not raised)."""
        modules = [CONVERSATIONS]
        if self.serves_telegram:
            modules.append(TELEGRAM)
        if self.settings.github_app_id is not None and QUEUE in self.worker_queues:
            modules.append(GITHUB)
        await self.warm_up.run(
            modules, self.telegram if self.serves_telegram else self.conversations
        )

    async def _sweep_approvals(self) -> None:
        async def sweep() -> None:  # the sweep must outlive a passing failure
            if self._conversations is None:
                return
            for approval, replies in await self._conversations.orchestrator.expire_due():
                if approval.conversation.startswith("tg:") and self._telegram is not None:
                    await self._telegram.expired(approval, replies)

        await periodic.every(self.approval_sweep_seconds, sweep, "approval sweep")

    def ask_to_stop(self) -> None:
        """SIGTERM while starting (from the signal handler, on the loop's thread): a pool
        still opening (a database that does not answer) gives up at once, and `start`
        returns having started nothing; the caller's shutdown then runs `stop`."""
        self.stop_asked = True
        if self._opening is not None:
            self._opening.get_loop().call_soon_threadsafe(self._opening.cancel)

    async def start(self, *, worker: bool) -> None:
        self._opening = asyncio.ensure_future(self.pool.open(wait=True, timeout=15))
        try:
            await self._opening
        except asyncio.CancelledError:
            if not self.stop_asked:
                raise
            log.info("stopping: gave up opening the database pool")
            await self.pool.close(timeout=1)
            return
        finally:
            self._opening = None
        await self.queue.open(self.pool)
        if worker:
            self._worker = asyncio.create_task(self._supervise_worker(), name="persais worker")
            self._sidecars = [
                asyncio.create_task(self._warm_up(), name="warm-up"),
                asyncio.create_task(self._sweep_approvals(), name="approval sweep"),
            ]
            if not self.settings.fly_configured and self.settings.release is None:
                self._sidecars.append(
                    asyncio.create_task(self._follow_releases(), name="release follower")
                )
            if self.serves_telegram:
                self._sidecars.append(
                    asyncio.create_task(self._deliver_outbox(), name="telegram outbox")
                )
            if self.settings.github_app_id is not None and QUEUE in self.worker_queues:
                self._sidecars.append(
                    asyncio.create_task(self._deliver_github_outbox(), name="github outbox")
                )
                if self.settings.github_redelivery_minutes > 0:
                    self._sidecars.append(
                        asyncio.create_task(self._sweep_redeliveries(), name="redelivery sweep")
                    )
        from app.intake import Intake
        from app.web.telegram_polling import poller

        intake = Intake(self.pool, self.queue)
        self.poller = poller(self.settings, self.conninfo, intake, self.metrics)
        if self.poller is not None:  # every process may poll; a lock lets one do it
            self._sidecars.append(asyncio.create_task(self.poller.run(), name="telegram poller"))

    async def _supervise_worker(self) -> None:
        """Keep the worker running: a crash (a lost database, a library error) is logged and
        the worker restarts after a growing pause, instead of the process going deaf."""
        pause = 1.0
        while True:
            started = time.monotonic()
            try:
                await self.queue.run_worker(
                    name=worker_name(),
                    concurrency=self.settings.worker_concurrency,
                    queues=self.worker_queues,
                )
                return
            except asyncio.CancelledError:
                raise
            except Exception:  # the worker's outermost edge
                log.exception("the worker stopped unexpectedly; restarting in %.0f s", pause)
            self.worker_restarts += 1
            pause = 1.0 if time.monotonic() - started > 60 else min(pause * 2, 30.0)
            await asyncio.sleep(pause)

    def agents_summary(self) -> dict[str, object]:
        """The agent set in service in this process, for /ready."""
        if self._conversations is None:
            if self._worker is not None:  # a worker whose agents are not loaded yet
                return {"loaded": [], "quarantined": [], "note": "starting"}
            return {"loaded": None, "note": "no agents in this process (web only)"}
        return self._conversations.current.describe()

    def release_summary(self) -> dict[str, object]:
        """The release this process runs, for /ready (the Fly deployer checks it)."""
        if self._conversations is None:
            if self._worker is not None:  # not synced yet: it runs no release so far
                return {"sha": None, "source": "starting"}
            return {"sha": self.settings.release, "source": "setting"}  # web only
        return self._conversations.deployments.here.running.summary()

    def worker_running(self) -> bool:
        return self._worker is not None and not self._worker.done()

    async def wait_worker(self) -> None:
        """For `persais worker`: return when the worker stops (it should not, until told)."""
        if self._worker is not None:
            await self._worker

    async def stop(self) -> None:
        await periodic.stop(self._sidecars, SIDECAR_STOP_SECONDS)
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
            await self._last_outbox_round()
        if self._telegram is not None:
            await self._telegram.close()
        if self._conversations is not None:
            await self._conversations.stop()
        if not self.pool.closed:  # closed: `start` gave up opening it, or never ran
            await self.queue.close()
            await self.pool.close()
