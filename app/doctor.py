"""`persais doctor`: what is configured, whether it works, and how to fix what does not.

Each check is a small function returning a `Check`. Online (the default), each configured
service is asked (`app.doctor_asks`); `--offline` only looks at the configuration and this
machine. Variables that do not parse are each listed and their part is broken; the rest is
still checked, since a half-done configuration is when the doctor is needed.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from app import doctor_asks
from app.agents.jail import Jail, find_bwrap
from app.agents.probe import probe
from app.costs.price import Price
from app.db import migrate
from app.db.database import DatabaseError, connect
from app.db.embedded import EmbeddedDatabaseError
from app.doctor_check import BROKEN, MISSING, OK, Check
from app.settings import Settings
from app.settings_problems import Problem

TIMEOUT = 5.0  # seconds for each service's answer

# Which part a variable configures (by prefix): a bad variable makes its part broken.
PARTS: dict[str, tuple[str, ...]] = {
    "database": ("DATABASE_URL", "PERSAIS_HOME"),
    "aider": ("AIDER_BIN",),
    "sandbox": ("PERSAIS_REQUIRE_SANDBOX", "PERSAIS_AGENT_"),
    "github": ("GITHUB_", "PERSAIS_HOME_REPO"),
    "telegram": ("TELEGRAM_", "PERSAIS_TELEGRAM_"),
    "fly": ("FLY_", "PERSAIS_FLY_"),
    "cost": ("LLM_PRICE_", "PERSAIS_BUDGET_", "PERSAIS_QUOTE_"),  # before "model": LLM_
    "model": ("LLM_",),
    "embeddings": ("EMBEDDINGS_",),
}


def check_database(settings: Settings) -> Check:
    try:
        db = connect(settings)
    except (DatabaseError, EmbeddedDatabaseError) as exc:
        hint = (
            "check DATABASE_URL" if settings.database_url else f"look at {settings.home}/pgdata/log"
        )
        return Check("database", BROKEN, str(exc).splitlines()[0], hint)
    try:
        import psycopg

        version = db.server_version
        with psycopg.connect(db.conninfo) as conn:
            state = migrate.status(conn)
        pending = (
            f", {len(state.pending)} migrations pending (persais migrate)" if state.pending else ""
        )
        return Check("database", OK, f"{db.kind} PostgreSQL {version} with pgvector{pending}")
    finally:
        db.release()


def check_git(settings: Settings) -> Check:
    git = shutil.which("git")
    if git is None:
        return Check("git", BROKEN, "git is not on PATH", "install git")
    out = subprocess.run([git, "--version"], capture_output=True, text=True, timeout=10)
    return Check("git", OK, out.stdout.strip())


def check_aider(settings: Settings) -> Check:
    from mechanic.aider_version import AIDER_CHAT_VERSION

    aider = settings.resolved_aider_bin()
    if aider is None or not aider.exists():
        where = f"AIDER_BIN={settings.aider_bin}" if settings.aider_bin else "no Aider found"
        return Check("aider", BROKEN, where, "run `python3 bootstrap.py setup` or set AIDER_BIN")
    try:
        out = subprocess.run([str(aider), "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        return Check("aider", BROKEN, f"{aider} does not run: {exc}", "reinstall it")
    match = re.search(r"(\d+\.\d+\.\d+)", out.stdout)
    if out.returncode != 0 or match is None:
        return Check("aider", BROKEN, f"{aider} --version failed", "reinstall it")
    version = match.group(1)
    if version != AIDER_CHAT_VERSION:
        return Check(
            "aider", BROKEN, f"{aider} is {version}, Persais pins {AIDER_CHAT_VERSION}",
            "run `python3 bootstrap.py setup`",
        )  # fmt: skip
    return Check("aider", OK, f"aider-chat {version} at {aider}")


def check_sandbox(settings: Settings) -> Check:
    """Starts a real agent host (the same command a deploy uses) and asks it one question."""
    jail = Jail(find_bwrap())
    tried = probe(jail)
    if jail.bwrap is None:
        status = BROKEN if settings.require_sandbox else MISSING
        refused = ", so dynamic agents are refused" if settings.require_sandbox else ""
        return Check(
            "sandbox", status,
            f"unsandboxed: no bubblewrap{refused}; agents, Aider and generated tests run"
            f" with limits only (host {'works' if tried.works else 'fails: ' + tried.detail})",
            "install bubblewrap (apt-get install bubblewrap)",
        )  # fmt: skip
    if not tried.works:
        fix = (
            "this system refuses user namespaces (plain Docker's default seccomp profile does):"
            " allow them (e.g. a Fly Machine or any VM; in Docker a seccomp profile that allows"
            " unshare/clone of namespaces), or run as root"
            if tried.userns_refused
            else "see the error; `bwrap --unshare-all true` shows the same"
        )
        return Check("sandbox", BROKEN, f"bubblewrap at {jail.bwrap} fails: {tried.detail}", fix)
    return Check(
        "sandbox", OK,
        f"sandboxed: an agent host answered under bubblewrap ({tried.detail}); Aider writes"
        " only its worktree",
    )  # fmt: skip


def check_github(settings: Settings) -> Check:
    from app.mechanic_jobs import home_repository

    nowhere = home_repository.missing(settings)  # no checkout (the image), no home repository
    if settings.github_app_id is None:
        mechanic = (
            "the Mechanic cannot run (no git checkout here for a local forge)"
            if nowhere
            else "the Mechanic uses the local forge"
        )
        return Check(
            "github", MISSING, f"no GitHub App; {mechanic}",
            "set GITHUB_APP_ID, GITHUB_PRIVATE_KEY(_PATH), GITHUB_WEBHOOK_SECRET",
        )  # fmt: skip
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        pem = settings.private_key_pem()
        assert pem is not None
        key = load_pem_private_key(pem.encode(), password=None)
    except (OSError, ValueError, TypeError, AssertionError) as exc:
        reason = type(exc).__name__ if not isinstance(exc, OSError) else str(exc)
        return Check(
            "github", BROKEN, f"the App's private key does not load ({reason})",
            "put GitHub's .pem in GITHUB_PRIVATE_KEY, or its path in GITHUB_PRIVATE_KEY_PATH",
        )  # fmt: skip
    if not isinstance(key, RSAPrivateKey):
        return Check("github", BROKEN, "the App's private key is not RSA", "use GitHub's .pem")
    if settings.github_webhook_secret is None:
        return Check(
            "github", BROKEN, f"App {settings.github_app_id} has no webhook secret",
            "set GITHUB_WEBHOOK_SECRET to the App's webhook secret",
        )  # fmt: skip
    if nowhere is not None:
        return Check(
            "github", BROKEN,
            f"App {settings.github_app_id}, key parses, but PERSAIS_HOME_REPO is unset and"
            " there is no git checkout here for a local forge: the Mechanic cannot run",
            "set PERSAIS_HOME_REPO=owner/name",
        )  # fmt: skip
    repo = settings.home_repo or "the local forge"
    return Check("github", OK, f"App {settings.github_app_id}, key parses, home: {repo}")


def check_telegram(settings: Settings) -> Check:
    if settings.telegram_bot_token is None:
        return Check("telegram", MISSING, "no bot", "set TELEGRAM_BOT_TOKEN from @BotFather")
    if settings.telegram_webhook_secret is None and settings.telegram_mode == "webhook":
        return Check(
            "telegram", BROKEN, f"bot {settings.telegram_bot_id} has no webhook secret",
            "set TELEGRAM_WEBHOOK_SECRET (updates are refused without it)",
        )  # fmt: skip
    if settings.telegram_webhook_secret is None and settings.telegram_mode is None:
        return Check(
            "telegram", OK, f"bot {settings.telegram_bot_id}, polling unless a webhook is set",
            "a webhook needs TELEGRAM_WEBHOOK_SECRET (offline: Telegram not asked)",
        )  # fmt: skip
    if not settings.telegram_allowed_users:
        return Check(
            "telegram", OK, f"bot {settings.telegram_bot_id}; nobody is allowed to command it yet",
            "set PERSAIS_TELEGRAM_ALLOWED_USERS",
        )  # fmt: skip
    people = len(settings.telegram_allowed_users)
    return Check("telegram", OK, f"bot {settings.telegram_bot_id}, {people} allowed user(s)")


def check_fly(settings: Settings) -> Check:
    if settings.fly_api_token is None:
        return Check("fly", MISSING, "no Fly token; deploys load in process", "set FLY_API_TOKEN")
    return Check("fly", OK, f"app {settings.fly_app_name} at {settings.fly_api_url}")


def check_model(settings: Settings) -> Check:
    if settings.llm_api_key is None:
        return Check("model", MISSING, f"no key for {settings.llm_api_base}", "set LLM_API_KEY")
    return Check("model", OK, f"{settings.llm_model} at {settings.llm_api_base}")


def check_cost(settings: Settings) -> Check:
    """Budgets and the Mechanic's quote count dollars: without a price they count only what
    the provider reports (OpenRouter does; most do not), so a cap would silently not cap."""
    caps = {
        "review": settings.budget_review_usd, "job": settings.budget_job_usd,
        "day": settings.budget_day_usd, "quote above": settings.quote_above_usd,
    }  # fmt: skip
    said = ", ".join(f"{name} ${value:g}" for name, value in caps.items() if value is not None)
    price = Price.of(settings)
    if price.known:
        priced = f"${price.input_per_mtok:g} / ${price.output_per_mtok:g} per million tokens"
        return Check("cost", OK, f"{priced}; " + (said or "no budgets"))
    if not said:
        return Check("cost", OK, "no price and no budgets: each call's tokens are recorded")
    if "openrouter.ai" in settings.llm_api_base:
        return Check("cost", OK, f"{said}; the provider reports each call's cost")
    return Check(
        "cost", BROKEN, f"{said} set, but no price: they count nothing the provider does not "
        "report", "set LLM_PRICE_INPUT_PER_MTOK and LLM_PRICE_OUTPUT_PER_MTOK",
    )  # fmt: skip


def check_embeddings(settings: Settings) -> Check:
    if settings.embeddings_model is None:
        return Check(
            "embeddings", MISSING, "no EMBEDDINGS_MODEL; memory searches full text only",
            "set EMBEDDINGS_MODEL",
        )  # fmt: skip
    return Check("embeddings", OK, f"{settings.embeddings_model} (not asked: --offline)")


def _asked(
    offline: Callable[[Settings], Check],
    ask: Callable[[Settings, float], Coroutine[Any, Any, Check]],
    timeout: float,
) -> Callable[[Settings], Check]:
    """The offline check first (is it configured, does the key parse?); when that passes,
    the service is asked. Each request has `timeout`; the whole exchange (two requests, a
    TLS handshake on a busy machine) is cut off at `guard`."""
    guard = timeout * 4 + 2

    def check(settings: Settings) -> Check:
        first = offline(settings)
        if first.status in (MISSING, BROKEN):
            return first
        try:
            return asyncio.run(asyncio.wait_for(ask(settings, timeout), guard))
        except TimeoutError:
            return Check(first.name, BROKEN, f"no answer within {guard:g} s")

    return check


def checks(offline: bool, timeout: float = TIMEOUT) -> dict[str, Callable[[Settings], Check]]:
    """Each part's check, in the order they are printed."""
    local: dict[str, Callable[[Settings], Check]] = {
        "database": check_database, "git": check_git, "aider": check_aider,
        "sandbox": check_sandbox,
    }  # fmt: skip
    if offline:
        return local | {"github": check_github, "telegram": check_telegram, "fly": check_fly,
                        "model": check_model, "cost": check_cost,
                        "embeddings": check_embeddings}  # fmt: skip
    return local | {
        "github": _asked(check_github, doctor_asks.ask_github, timeout),
        "telegram": _asked(check_telegram, doctor_asks.ask_telegram, timeout),
        "fly": _asked(check_fly, doctor_asks.ask_fly, timeout),
        "model": _asked(check_model, doctor_asks.ask_model, timeout),
        "cost": check_cost,
        "embeddings": _asked(check_embeddings, doctor_asks.ask_embeddings, timeout),
    }


def part_of(variable: str) -> str | None:
    for part, prefixes in PARTS.items():
        if variable.startswith(prefixes):
            return part
    return None


def run(
    settings: Settings,
    print_line: Callable[[str], None] = print,
    *,
    problems: tuple[Problem, ...] = (),
    offline: bool = False,
    timeout: float = TIMEOUT,
) -> int:
    """One line per bad variable, then one per part in a fixed order; the checks run at
    the same time (the slow ones, the sandbox probe and the services, overlap). 1 when a
    variable, or a configured part, is broken."""
    if not problems:
        print_line(Check("settings", OK, "every variable parses").line())
    spoiled: dict[str, list[str]] = {}
    for problem in problems:
        print_line(Check("settings", BROKEN, problem.message).line())
        for variable in problem.variables:
            part = part_of(variable)
            if part is not None and variable not in spoiled.setdefault(part, []):
                spoiled[part].append(variable)
    # A part with a bad variable is not asked: its default (another host, say) is not
    # what was meant, and a key must not go where it was not sent.
    todo = {name: check for name, check in checks(offline, timeout).items() if name not in spoiled}
    with ThreadPoolExecutor(max_workers=len(todo)) as pool:
        running = {name: pool.submit(check, settings) for name, check in todo.items()}
        found = {name: future.result() for name, future in running.items()}
    broken = bool(problems)
    for name in checks(offline, timeout):
        result = found.get(name) or Check(
            name, BROKEN, f"not checked: see the settings lines above ({', '.join(spoiled[name])})"
        )
        broken = broken or result.status == BROKEN
        print_line(result.line())
    return 1 if broken else 0
