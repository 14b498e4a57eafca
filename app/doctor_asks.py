"""`persais doctor`'s questions to the services Persais uses, each with a short timeout.

A made-up token or a model on a closed port looks fine until someone asks; so each part that
is configured is asked the cheapest question that proves it works: GitHub `GET /app` with the
App's JWT and its installations, Telegram `getMe` and `getWebhookInfo`, the model a one-token
completion, the embeddings endpoint one vector, Fly the app's machines. No answer, or an
error, is "broken". No secret is ever part of a line: errors name the host, never the URL.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

import httpx

from app.doctor_check import BROKEN, MISSING, OK, Check
from app.settings import Settings

# A webhook error newer than this means Telegram cannot deliver now; older, it is history.
RECENT_WEBHOOK_ERROR_SECONDS = 600


def _failed(name: str, where: str, exc: Exception, wait: float, fix: str) -> Check:
    if isinstance(exc, httpx.TimeoutException):
        return Check(name, BROKEN, f"{where} did not answer within {wait:g} s", fix)
    return Check(name, BROKEN, f"{where} cannot be reached ({type(exc).__name__})", fix)


def _host(url: str) -> str:
    return urlsplit(url).netloc or url


def _said(response: httpx.Response) -> str:
    """What a JSON error body says (GitHub's `message`, OpenAI's `error.message`,
    Telegram's `description`, Fly's `error`), cut short."""
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase
    if isinstance(body, dict):
        said = body.get("message") or body.get("description") or body.get("error")
        if isinstance(said, dict):
            said = said.get("message")
        if said:
            return str(said)[:160]
    return response.reason_phrase


async def ask_github(settings: Settings, wait: float) -> Check:
    """The App (GET /app with its JWT) and where it is installed (GET /app/installations).
    A JWT as githubkit makes it (RS256, issued a minute back, ten minutes), by PyJWT:
    importing githubkit alone costs the doctor a second."""
    import jwt

    key = settings.private_key_pem()
    assert settings.github_app_id is not None
    assert key is not None
    now = int(time.time())
    token = jwt.encode(
        {"iat": now - 60, "exp": now + 540, "iss": str(settings.github_app_id)}, key, "RS256"
    )
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json",
               "User-Agent": "persais", "X-GitHub-Api-Version": "2022-11-28"}  # fmt: skip
    where = f"GitHub at {_host(settings.github_api_url)}"
    try:
        async with httpx.AsyncClient(
            base_url=settings.github_api_url, headers=headers, timeout=wait
        ) as http:
            answer = await http.get("/app")
            if answer.status_code == 200:
                installations = await http.get("/app/installations", params={"per_page": 100})
                answer = answer if installations.status_code == 200 else installations
    except httpx.HTTPError as exc:
        return _failed("github", where, exc, wait, "check GITHUB_API_URL and the network")
    if answer.status_code != 200:
        fix = (
            "check GITHUB_APP_ID and that the key is the App's (a new one is made in the App's"
            " settings)" if answer.status_code == 401 else "see GitHub's answer"
        )  # fmt: skip
        return Check(
            "github", BROKEN, f"{where} answered {answer.status_code}: {_said(answer)}", fix
        )
    app, installed = answer.json(), installations.json()
    accounts = sorted(str((i.get("account") or {}).get("login")) for i in installed)
    name = app.get("slug") or app.get("name") or settings.github_app_id
    install = f"{app['html_url']}/installations/new" if app.get("html_url") else "the App's page"
    owner = settings.home_repo.split("/")[0] if settings.home_repo else None
    if owner is not None and owner.lower() not in {a.lower() for a in accounts}:
        return Check(
            "github", BROKEN, f"App {name} is not installed on {owner} (home {settings.home_repo})",
            f"install it from {install}",
        )  # fmt: skip
    where_installed = ", ".join(accounts) if accounts else "nowhere yet"
    detail = f"App {name} ({settings.github_app_id}) answers; installed on {where_installed}"
    home = settings.home_repo or "the local forge"
    return Check("github", OK, f"{detail}; home: {home}", "" if accounts else f"install: {install}")


async def ask_telegram(settings: Settings, wait: float) -> Check:
    """getMe (is the token real?) and getWebhookInfo (how updates arrive, the last error)."""
    assert settings.telegram_bot_token is not None
    base = f"{settings.telegram_api_url}/bot{settings.telegram_bot_token.get_secret_value()}"
    where = f"Telegram at {_host(settings.telegram_api_url)}"
    try:
        async with httpx.AsyncClient(timeout=wait) as http:
            me = await http.post(f"{base}/getMe")
            if me.status_code != 200:
                fix = "take the token from @BotFather again" if me.status_code in (401, 404) else ""
                said = f"{me.status_code}: {_said(me)}"
                return Check("telegram", BROKEN, f"{where} refuses the token ({said})", fix)
            hook = await http.post(f"{base}/getWebhookInfo")
            hook.raise_for_status()
    except httpx.HTTPError as exc:
        return _failed("telegram", where, exc, wait, "check TELEGRAM_API_URL and the network")
    bot = me.json()["result"]
    info: dict[str, Any] = hook.json()["result"]
    return _telegram_verdict(settings, f"@{bot.get('username')} ({bot.get('id')})", info)


def _telegram_verdict(settings: Settings, bot: str, info: dict[str, Any]) -> Check:
    url = info.get("url") or ""
    # PERSAIS_TELEGRAM_MODE (polling or webhook) forces a mode; unset, Persais polls when
    # Telegram has no webhook for the bot (app/web/telegram_polling.py).
    mode = settings.telegram_mode or ("webhook" if url else "polling")
    people = len(settings.telegram_allowed_users)
    who = f"{people} allowed user(s)" if people else "nobody allowed yet"
    who_fix = "" if people else "set PERSAIS_TELEGRAM_ALLOWED_USERS"
    pending = info.get("pending_update_count") or 0
    if mode == "polling":
        if url:  # only when forced: Persais deletes the webhook as it starts polling
            return Check(
                "telegram", OK, f"{bot}, polling (forced): the webhook set at Telegram ({url})"
                " is deleted when Persais starts", "or run `persais telegram delete-webhook`",
            )  # fmt: skip
        return Check("telegram", OK, f"{bot}, polling, {pending} update(s) waiting, {who}", who_fix)
    if settings.telegram_webhook_secret is None:
        return Check(
            "telegram", BROKEN, f"{bot}: webhook mode without a webhook secret",
            "set TELEGRAM_WEBHOOK_SECRET (updates are refused without it)",
        )  # fmt: skip
    if not url:
        return Check(
            "telegram", BROKEN, f"{bot}: no webhook is set at Telegram, so no update arrives",
            "run `persais telegram set-webhook https://<your host>/webhooks/telegram`",
        )  # fmt: skip
    detail = f"{bot}, webhook {url}, {pending} update(s) waiting"
    error, when = info.get("last_error_message"), info.get("last_error_date")
    if error and isinstance(when, int):
        ago = max(0, int(time.time()) - when)
        said = f"last delivery error {_ago(ago)} ago: {error}"
        if ago < RECENT_WEBHOOK_ERROR_SECONDS:
            return Check(
                "telegram", BROKEN, f"{detail}; {said}",
                "Telegram cannot reach the webhook: check the URL, TLS and that serve runs",
            )  # fmt: skip
        detail += f" ({said})"
    return Check("telegram", OK, f"{detail}, {who}", who_fix)


def _ago(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h" if seconds < 172800 else f"{seconds // 86400} days"


async def ask_model(settings: Settings, wait: float) -> Check:
    """A one-token completion: proves the address, the key and the model name at once."""
    if settings.llm_api_key is None:
        return Check("model", MISSING, f"no key for {settings.llm_api_base}", "set LLM_API_KEY")
    where = f"{settings.llm_model} at {_host(settings.llm_api_base)}"
    body = {"model": settings.llm_model, "max_tokens": 1,
            "messages": [{"role": "user", "content": "Answer with one word: ok"}]}  # fmt: skip
    headers = {"Authorization": f"Bearer {settings.llm_api_key.get_secret_value()}"}
    started = time.monotonic()
    try:
        async with httpx.AsyncClient(timeout=wait) as http:
            answer = await http.post(
                f"{settings.llm_api_base}/chat/completions", json=body, headers=headers
            )
    except httpx.HTTPError as exc:
        return _failed("model", where, exc, wait, "check LLM_API_BASE and the network")
    if answer.status_code != 200:
        fix = {401: "check LLM_API_KEY", 403: "check LLM_API_KEY", 404: "check LLM_MODEL"}
        return Check(
            "model", BROKEN, f"{where} answered {answer.status_code}: {_said(answer)}",
            fix.get(answer.status_code, "see the provider's answer"),
        )  # fmt: skip
    took = (time.monotonic() - started) * 1000
    return Check("model", OK, f"{where} answered in {took:.0f} ms")


async def ask_embeddings(settings: Settings, wait: float) -> Check:
    """One vector, and its size (pgvector indexes up to 2,000 dimensions)."""
    from app.memory.embeddings import HNSW_MAX_DIMS

    chosen = settings.embeddings()
    if chosen is None:
        return Check(
            "embeddings", MISSING, "no EMBEDDINGS_MODEL; memory searches full text only",
            "set EMBEDDINGS_MODEL",
        )  # fmt: skip
    base, key, model = chosen
    where = f"{model} at {_host(base)}"
    body = {"model": model, "input": ["persais doctor"], "encoding_format": "float"}
    try:
        async with httpx.AsyncClient(timeout=wait) as http:
            answer = await http.post(
                f"{base}/embeddings", json=body, headers={"Authorization": f"Bearer {key}"}
            )
    except httpx.HTTPError as exc:
        return _failed("embeddings", where, exc, wait, "check EMBEDDINGS_API_BASE")
    if answer.status_code != 200:
        return Check(
            "embeddings", BROKEN, f"{where} answered {answer.status_code}: {_said(answer)}",
            "check EMBEDDINGS_MODEL and EMBEDDINGS_API_KEY (or LLM_API_KEY)",
        )  # fmt: skip
    try:
        dims = len(answer.json()["data"][0]["embedding"])
    except (ValueError, KeyError, IndexError, TypeError):
        return Check("embeddings", BROKEN, f"{where} answered without a vector", "see its docs")
    scan = f" (over {HNSW_MAX_DIMS}: searched without an index)" if dims > HNSW_MAX_DIMS else ""
    return Check("embeddings", OK, f"{where}: {dims} dimensions{scan}")


async def ask_fly(settings: Settings, wait: float) -> Check:
    """The app's machines (GET /v1/apps/{app}/machines) and their states."""
    if settings.fly_api_token is None or settings.fly_app_name is None:
        return Check("fly", MISSING, "no Fly token; deploys load in process", "set FLY_API_TOKEN")
    app = settings.fly_app_name
    where = f"Fly at {_host(settings.fly_api_url)}"
    headers = {"Authorization": f"Bearer {settings.fly_api_token.get_secret_value()}"}
    try:
        async with httpx.AsyncClient(timeout=wait) as http:
            answer = await http.get(
                f"{settings.fly_api_url}/v1/apps/{app}/machines", headers=headers
            )
    except httpx.HTTPError as exc:
        return _failed("fly", where, exc, wait, "check FLY_API_URL and the network")
    if answer.status_code != 200:
        fix = {401: "check FLY_API_TOKEN (fly tokens create deploy)", 404: "check FLY_APP_NAME"}
        return Check(
            "fly", BROKEN, f"{where} answered {answer.status_code} for app {app}: {_said(answer)}",
            fix.get(answer.status_code, "see Fly's answer"),
        )  # fmt: skip
    states: dict[str, int] = {}
    for machine in answer.json():
        states[str(machine.get("state"))] = states.get(str(machine.get("state")), 0) + 1
    if not states:
        return Check("fly", BROKEN, f"app {app} has no machines", "run `fly deploy` once")
    summary = ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
    return Check("fly", OK, f"app {app}: {sum(states.values())} machine(s), {summary}")
