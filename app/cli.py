"""`persais`: the command line, and the composition root of every process it starts."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import re
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from app import audit, inbox
from app.db.database import Database, DatabaseError, connect, migrate_to_latest
from app.db.embedded import EmbeddedDatabaseError
from app.db.migrate import MigrationError
from app.runtime import Runtime
from app.settings import Settings, SettingsError, load_settings
from app.version import build_info

if TYPE_CHECKING:  # LangGraph and the agents load only in the commands that converse
    from app.conversations import Conversations

T = TypeVar("T")

log = logging.getLogger("persais")


class Exit(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def main(argv: Sequence[str] | None = None) -> None:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        env_file = Path(".env") if Path(".env").is_file() else None
        settings = load_settings(env_file=env_file)
        logging.basicConfig(
            level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        code = args.func(settings, args)
    except SettingsError as exc:
        print(f"persais: configuration error: {exc}", file=sys.stderr)
        sys.exit(2)
    except Exit as exc:
        print(f"persais: {exc.message}", file=sys.stderr)
        sys.exit(exc.code)
    sys.exit(code)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="persais", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the web server (and a worker, by default)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--no-worker", action="store_true", help="web only; run `persais worker`")
    serve.add_argument("--access-log", action="store_true")
    serve.set_defaults(func=cmd_serve)

    worker = commands.add_parser("worker", help="process deliveries (no web server)")
    worker.set_defaults(func=cmd_worker)

    migrate = commands.add_parser("migrate", help="apply pending database migrations")
    migrate.set_defaults(func=cmd_migrate)

    doctor = commands.add_parser("doctor", help="check what is configured and whether it works")
    doctor.set_defaults(func=cmd_doctor)

    chat = commands.add_parser("chat", help="talk to Persais in this terminal")
    chat.add_argument("--name", default="local", help="who you are (the thread is cli:NAME)")
    chat.set_defaults(func=cmd_chat)

    agents = commands.add_parser("agents", help="load the agents and show each, or why not")
    agents.set_defaults(func=cmd_agents)

    mechanic = commands.add_parser("mechanic", help="run one Mechanic job from here")
    mechanic.add_argument("request", help='what to build, e.g. "Create an agent Echo ..."')
    mechanic.add_argument("--template-only", action="store_true", help="no model: the template")
    mechanic.add_argument("--kind", default="agent", choices=["agent", "tool"])
    mechanic.add_argument("--name", help="with --template-only: the agent's name")
    mechanic.add_argument("--command", dest="agent_command", help="with --template-only")
    mechanic.set_defaults(func=cmd_mechanic)

    telegram = commands.add_parser("telegram", help="the Telegram bot's webhook")
    telegram_commands = telegram.add_subparsers(dest="telegram_command", required=True)
    set_webhook = telegram_commands.add_parser("set-webhook", help="point Telegram at URL")
    set_webhook.add_argument("url", help="https://<your host>/webhooks/telegram")
    set_webhook.set_defaults(func=cmd_telegram_set_webhook)
    info = telegram_commands.add_parser("info", help="getWebhookInfo: pending updates, errors")
    info.set_defaults(func=cmd_telegram_info)

    inbox = commands.add_parser("inbox", help="look at and replay webhook deliveries")
    inbox_commands = inbox.add_subparsers(dest="inbox_command", required=True)
    listing = inbox_commands.add_parser("list", help="recent deliveries")
    listing.add_argument("--dead", action="store_true", help="only deliveries that gave up")
    listing.add_argument("--status", choices=["received", "processed", "ignored", "failed", "dead"])
    listing.add_argument("--limit", type=int, default=50)
    listing.set_defaults(func=cmd_inbox_list)
    replay = inbox_commands.add_parser("replay", help="process a delivery again")
    replay.add_argument("id", type=int, help="the inbox id (first column of `inbox list`)")
    replay.set_defaults(func=cmd_inbox_replay)
    return parser


def _database(settings: Settings, *, migrate: bool = True) -> Database:
    try:
        db = connect(settings)
        if migrate:
            for migration in migrate_to_latest(db):
                log.info("applied migration %s", migration.name)
    except (DatabaseError, EmbeddedDatabaseError, MigrationError) as exc:
        raise Exit(1, f"database: {exc}") from None
    return db


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from app.web.server import create_app

    db = _database(settings)
    try:
        _Server = _uvicorn_server()
        runtime = Runtime(settings, db.conninfo)
        app = create_app(runtime, database_kind=db.kind, with_worker=not args.no_worker)
        config = uvicorn.Config(
            app,
            host=args.host,
            port=args.port,
            access_log=args.access_log,
            log_level=settings.log_level.lower(),
            timeout_graceful_shutdown=20,
        )
        _Server(config).run()
    finally:
        db.release()
    return 0


def _uvicorn_server() -> type:
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            # uvicorn re-raises SIGTERM/SIGINT once it has shut down, which would end the
            # process before it lets go of the embedded Postgres; we exit normally instead.
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, self.handle_exit)
            yield

    return Server


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    db = _database(settings)

    async def work() -> None:
        runtime = Runtime(settings, db.conninfo)
        await runtime.start(worker=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        waiter = asyncio.create_task(runtime.wait_worker())
        await asyncio.wait(
            [waiter, asyncio.create_task(stop.wait())], return_when="FIRST_COMPLETED"
        )
        await runtime.stop()
        if waiter.done() and not waiter.cancelled() and waiter.exception():
            raise Exit(1, f"worker stopped: {waiter.exception()}")

    try:
        asyncio.run(work())
    finally:
        db.release()
    return 0


def _with_conversations(settings: Settings, body: Callable[[Conversations], Awaitable[T]]) -> T:
    from app.conversations import Conversations

    async def run(runtime: Runtime) -> T:
        conversations = Conversations(
            settings, runtime.pool, runtime.conninfo, build_info(settings.git_commit)
        )
        await conversations.start()
        try:
            return await body(conversations)
        finally:
            await conversations.stop()

    return _with_runtime(settings, run)


def cmd_chat(settings: Settings, args: argparse.Namespace) -> int:
    from app.channels.terminal import TerminalChat, stdin_reader

    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,32}", args.name):
        raise Exit(2, "--name: letters, digits, _ . - (at most 32)")
    logging.getLogger().setLevel(logging.WARNING)  # the terminal is the conversation

    async def body(conversations: Conversations) -> int:
        await TerminalChat(conversations.orchestrator, args.name).run(stdin_reader)
        return 0

    return _with_conversations(settings, body)


def cmd_agents(settings: Settings, args: argparse.Namespace) -> int:
    async def body(conversations: Conversations) -> int:
        agents = conversations.current
        print(f"agent set {agents.fingerprint} from {settings.resolved_agents_dir()}")
        for loaded in sorted(agents.agents.values(), key=lambda a: a.manifest.name):
            m = loaded.manifest
            kind = "built-in" if loaded.builtin else "dynamic"
            print(f"  ok           {m.name:<16} /{m.command:<16} {m.version:<8} {kind}")
        for q in sorted(agents.quarantined.values(), key=lambda q: q.name):
            print(f"  quarantined  {q.name:<16} {q.reason}")
        return 1 if agents.quarantined else 0

    return _with_conversations(settings, body)


def cmd_mechanic(settings: Settings, args: argparse.Namespace) -> int:
    import secrets

    from app import mechanic_jobs
    from mechanic.job import run_job
    from mechanic.plan import PlanError
    from mechanic.scaffold import ScaffoldError

    plan = None
    if args.template_only:
        if not args.name:
            raise Exit(2, "--template-only needs --name (and --command, default: the name)")
        try:
            plan = mechanic_jobs.template_plan(
                args.kind, args.name, args.agent_command or args.name, args.request[:200]
            )
        except (ValueError, mechanic_jobs.MechanicUnavailable) as exc:
            raise Exit(2, f"mechanic: {str(exc).splitlines()[0]}") from None

    async def progress(stage: str) -> None:
        print(f"… {stage}", flush=True)

    async def body(runtime: Runtime) -> int:
        try:
            deps = mechanic_jobs.job_deps(
                settings, runtime.pool, progress, use_aider=not args.template_only
            )
        except mechanic_jobs.MechanicUnavailable as exc:
            raise Exit(2, f"mechanic: {exc}") from None
        job_id = secrets.token_hex(4)
        await mechanic_jobs.record_start(
            runtime.pool, job_id, conversation="cli:mechanic", user="cli", request=args.request
        )
        try:
            outcome = await run_job(job_id, args.request, deps, plan=plan)
        except (PlanError, ScaffoldError) as exc:
            from mechanic.job import JobOutcome

            outcome = JobOutcome("failed", f"The plan could not be used: {exc}")
        await mechanic_jobs.record_outcome(runtime.pool, job_id, outcome)
        print(outcome.message)
        return 0 if outcome.status in ("opened", "question") else 1

    return _with_runtime(settings, body)


def cmd_telegram_set_webhook(settings: Settings, args: argparse.Namespace) -> int:
    if settings.telegram_bot_token is None or settings.telegram_webhook_secret is None:
        raise Exit(2, "set TELEGRAM_BOT_TOKEN and TELEGRAM_WEBHOOK_SECRET first")
    if not args.url.startswith("https://") and not args.url.startswith("http://127.0.0.1"):
        raise Exit(2, f"Telegram calls webhooks over https only: {args.url}")
    from app.telegram.channel import ALLOWED_UPDATES, make_bot

    async def run() -> None:
        bot = make_bot(settings)
        try:
            await bot.set_webhook(
                args.url,
                secret_token=settings.telegram_webhook_secret.get_secret_value(),  # type: ignore[union-attr]
                allowed_updates=ALLOWED_UPDATES,
                drop_pending_updates=False,
            )
        finally:
            await bot.session.close()

    asyncio.run(run())
    print(f"webhook set to {args.url} (updates: {', '.join(ALLOWED_UPDATES)})")
    return 0


def cmd_telegram_info(settings: Settings, args: argparse.Namespace) -> int:
    if settings.telegram_bot_token is None:
        raise Exit(2, "set TELEGRAM_BOT_TOKEN first")
    from app.telegram.channel import make_bot

    async def run() -> object:
        bot = make_bot(settings)
        try:
            return await bot.get_webhook_info()
        finally:
            await bot.session.close()

    info: Any = asyncio.run(run())
    print(f"url:              {info.url or '(none)'}")
    print(f"pending updates:  {info.pending_update_count}")
    if info.last_error_message:
        print(
            f"last error:       {info.last_error_date:%Y-%m-%d %H:%M:%S} {info.last_error_message}"
        )
    print(f"allowed updates:  {', '.join(info.allowed_updates or []) or '(all)'}")
    return 0


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    try:
        db = connect(settings)
        try:
            applied = migrate_to_latest(db)
        finally:
            db.release()
    except (DatabaseError, EmbeddedDatabaseError, MigrationError) as exc:
        raise Exit(1, f"database: {exc}") from None
    if applied:
        for migration in applied:
            print(f"applied {migration.name}")
    else:
        print("the database is up to date")
    return 0


def cmd_doctor(settings: Settings, args: argparse.Namespace) -> int:
    from app import doctor

    return doctor.run(settings)


def _with_runtime(settings: Settings, body: Callable[[Runtime], Awaitable[T]]) -> T:
    """Run `body` with an open pool and queue, no worker: for one-shot commands."""
    db = _database(settings)

    async def run() -> T:
        runtime = Runtime(settings, db.conninfo)
        await runtime.start(worker=False)
        try:
            return await body(runtime)
        finally:
            await runtime.stop()

    try:
        return asyncio.run(run())
    finally:
        db.release()


def cmd_inbox_list(settings: Settings, args: argparse.Namespace) -> int:
    status = "dead" if args.dead else args.status

    async def body(runtime: Runtime) -> list[inbox.StoredDelivery]:
        async with runtime.pool.connection() as conn:
            return await inbox.listing(conn, status=status, limit=args.limit)

    rows = _with_runtime(settings, body)
    if not rows:
        print("no deliveries" + (f" with status {status}" if status else ""))
        return 0
    for row in rows:
        event = row.event + (f".{row.action}" if row.action else "")
        line = (
            f"{row.id:>7}  {row.source:<8} {row.status:<9} {row.attempts:>2}x  "
            f"{row.received_at:%Y-%m-%d %H:%M:%S}  {event}  {row.delivery_id}"
        )
        if row.last_error and row.status in ("failed", "dead"):
            line += f"\n         last error: {row.last_error.splitlines()[0][:160]}"
        print(line)
    return 0


def cmd_inbox_replay(settings: Settings, args: argparse.Namespace) -> int:
    async def body(runtime: Runtime) -> bool:
        async with runtime.pool.connection() as conn, conn.transaction():
            if not await inbox.reopen(conn, args.id):
                return False
            await runtime.queue.enqueue(conn, args.id)
            await audit.record(conn, actor="cli", action="inbox.replay", subject=f"inbox:{args.id}")
            return True

    if not _with_runtime(settings, body):
        raise Exit(
            1, f"inbox {args.id} is not a failed or dead delivery (see `persais inbox list`)"
        )
    print(f"inbox {args.id} queued again")
    return 0
