"""The one reader of the environment.

Every configurable value of Persais is a field here, named exactly as the variable in
`.env.example`. Nothing else in the code base reads `os.environ`.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Annotated, Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

_REPO_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}$")
_TELEGRAM_TOKEN_RE = re.compile(r"^(\d{1,20}):[A-Za-z0-9_-]{30,64}$")
_TELEGRAM_SECRET_RE = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
_FLY_APP_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")

# Where the project's own Aider virtualenv lives when Persais runs from a checkout
# (`bootstrap.py` creates it) or from the container image (the Dockerfile creates it).
CHECKOUT_ROOT = Path(__file__).resolve().parent.parent
AIDER_CANDIDATES = (
    CHECKOUT_ROOT / ".aider-venv" / "bin" / "aider",
    Path("/opt/aider/bin/aider"),
)


def _ids(value: Any) -> Any:
    """Accept "1, 2,3" (the environment's shape) as well as a list."""
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",") if p.strip()]
        for part in parts:
            if not part.lstrip("-").isdigit():
                raise ValueError(
                    f"expected comma-separated numeric Telegram user ids, got {part!r}"
                )
        return [int(p) for p in parts]
    return value


class Settings(BaseSettings):
    """Typed configuration. Secrets are `SecretStr`, so they never print."""

    model_config = SettingsConfigDict(
        case_sensitive=True,
        extra="ignore",
        populate_by_name=True,
        hide_input_in_errors=True,
        # `.env.example` copied as it is has empty values: they mean "not set".
        env_ignore_empty=True,
    )

    persais_home: Path = Field(default=Path(".persais"), alias="PERSAIS_HOME")
    database_url: SecretStr | None = Field(default=None, alias="DATABASE_URL")

    github_app_id: int | None = Field(default=None, alias="GITHUB_APP_ID", gt=0)
    github_private_key: SecretStr | None = Field(default=None, alias="GITHUB_PRIVATE_KEY")
    github_private_key_path: Path | None = Field(default=None, alias="GITHUB_PRIVATE_KEY_PATH")
    github_webhook_secret: SecretStr | None = Field(default=None, alias="GITHUB_WEBHOOK_SECRET")
    github_api_url: str = Field(default="https://api.github.com", alias="GITHUB_API_URL")
    # The App's OAuth client (`persais setup github` writes them): "Sign in with GitHub".
    github_client_id: str | None = Field(default=None, alias="GITHUB_CLIENT_ID")
    github_client_secret: SecretStr | None = Field(default=None, alias="GITHUB_CLIENT_SECRET")
    home_repo: str | None = Field(default=None, alias="PERSAIS_HOME_REPO")
    # Where people reach this server (https://persais.fly.dev): the console's links, [View PR]
    # on the local forge, "Sign in with GitHub"'s return address. Unset: the address it serves.
    public_url: str | None = Field(default=None, alias="PERSAIS_PUBLIC_URL")

    telegram_bot_token: SecretStr | None = Field(default=None, alias="TELEGRAM_BOT_TOKEN")
    telegram_webhook_secret: SecretStr | None = Field(default=None, alias="TELEGRAM_WEBHOOK_SECRET")
    telegram_api_url: str = Field(default="https://api.telegram.org", alias="TELEGRAM_API_URL")
    telegram_allowed_users: Annotated[list[int], NoDecode] = Field(
        default_factory=list, alias="PERSAIS_TELEGRAM_ALLOWED_USERS"
    )
    telegram_admins: Annotated[list[int], NoDecode] = Field(
        default_factory=list, alias="PERSAIS_TELEGRAM_ADMINS"
    )
    # Where GitHub news goes (new pull requests, reviews, merges); unset: the first admin.
    telegram_admin_chat: int | None = Field(default=None, alias="PERSAIS_TELEGRAM_ADMIN_CHAT")
    # How updates arrive: unset, by polling when Telegram knows no webhook for the bot and by
    # the webhook when one is set; "polling" or "webhook" forces one (app/web/telegram_polling).
    telegram_mode: str | None = Field(default=None, alias="PERSAIS_TELEGRAM_MODE")
    github_redelivery_minutes: float = Field(
        default=10, alias="PERSAIS_GITHUB_REDELIVERY_MINUTES", ge=0, le=24 * 60
    )

    llm_api_base: str = Field(default="https://openrouter.ai/api/v1", alias="LLM_API_BASE")
    llm_api_key: SecretStr | None = Field(default=None, alias="LLM_API_KEY")
    llm_model: str = Field(default="anthropic/claude-sonnet-4.5", alias="LLM_MODEL")
    aider_bin: Path | None = Field(default=None, alias="AIDER_BIN")
    # Cost (app/costs): the model's price in USD per million tokens (unset: a call's cost is
    # what the provider reports, or unknown), budgets in USD (unset: no cap), and the
    # estimate above which the Mechanic asks before it runs (unset: it never asks).
    llm_price_input_per_mtok: float | None = Field(
        default=None, alias="LLM_PRICE_INPUT_PER_MTOK", ge=0
    )
    llm_price_output_per_mtok: float | None = Field(
        default=None, alias="LLM_PRICE_OUTPUT_PER_MTOK", ge=0
    )
    budget_review_usd: float | None = Field(default=None, alias="PERSAIS_BUDGET_REVIEW_USD", gt=0)
    budget_job_usd: float | None = Field(default=None, alias="PERSAIS_BUDGET_JOB_USD", gt=0)
    budget_day_usd: float | None = Field(default=None, alias="PERSAIS_BUDGET_DAY_USD", gt=0)
    quote_above_usd: float | None = Field(default=None, alias="PERSAIS_QUOTE_ABOVE_USD", ge=0)
    # Memory: vectors from an OpenAI-compatible /v1/embeddings (unset: full-text search only).
    embeddings_model: str | None = Field(default=None, alias="EMBEDDINGS_MODEL")
    embeddings_api_base: str | None = Field(default=None, alias="EMBEDDINGS_API_BASE")
    embeddings_api_key: SecretStr | None = Field(default=None, alias="EMBEDDINGS_API_KEY")

    fly_api_token: SecretStr | None = Field(default=None, alias="FLY_API_TOKEN")
    fly_app_name: str | None = Field(default=None, alias="FLY_APP_NAME")
    fly_api_url: str = Field(default="https://api.machines.dev", alias="FLY_API_URL")
    fly_machine_id: str | None = Field(default=None, alias="FLY_MACHINE_ID")  # set by Fly
    # Where each machine answers /ready on Fly's private network (fly.toml's internal_port).
    fly_ready_port: int = Field(default=8080, alias="PERSAIS_FLY_READY_PORT", ge=1, le=65535)
    # The release this process runs (the Fly deployer sets it on each machine); unset: the
    # latest good release in the ledger, else the image's own agents.
    release: str | None = Field(default=None, alias="PERSAIS_RELEASE")
    deploy_timeout_seconds: float = Field(
        default=120, alias="PERSAIS_DEPLOY_TIMEOUT_SECONDS", gt=0, le=3600
    )

    worker_concurrency: int = Field(default=4, alias="PERSAIS_WORKER_CONCURRENCY", ge=1, le=64)
    worker_max_attempts: int = Field(default=5, alias="PERSAIS_WORKER_MAX_ATTEMPTS", ge=1, le=50)
    worker_retry_base_seconds: int = Field(
        default=2, alias="PERSAIS_WORKER_RETRY_BASE_SECONDS", ge=0, le=60
    )
    worker_stalled_seconds: int = Field(
        default=30, alias="PERSAIS_WORKER_STALLED_SECONDS", ge=2, le=3600
    )
    # Bytes that webhook bodies not yet verified may hold, across all connections (one
    # GitHub delivery is at most 25 MB); past it a request gets 503 and Retry-After.
    unverified_body_bytes: int = Field(
        default=32 * 1024 * 1024, alias="PERSAIS_UNVERIFIED_BODY_BYTES", ge=1024
    )
    agents_dir: Path | None = Field(default=None, alias="PERSAIS_AGENTS_DIR")
    # Refuse to run dynamic agents outside bubblewrap (on in the container image and on Fly).
    require_sandbox: bool = Field(default=False, alias="PERSAIS_REQUIRE_SANDBOX")
    # Each agent host's address space, and a call's deadline before its host is killed.
    agent_memory_mb: int = Field(default=256, alias="PERSAIS_AGENT_MEMORY_MB", ge=64, le=8192)
    agent_timeout_seconds: float = Field(
        default=30, alias="PERSAIS_AGENT_TIMEOUT_SECONDS", gt=0, le=600
    )
    approval_timeout_seconds: float = Field(
        default=3600, alias="PERSAIS_APPROVAL_TIMEOUT_SECONDS", gt=0, le=7 * 24 * 3600
    )
    # A stranger (Telegram, or a GitHub commenter who may not write) is told no once per
    # window; what they send meanwhile is refused quietly and counted in the next audit row.
    refusal_window_seconds: float = Field(
        default=24 * 3600, alias="PERSAIS_REFUSAL_WINDOW_SECONDS", gt=0, le=30 * 24 * 3600
    )
    # Retention (app/retention): what is kept, and how often a worker prunes the rest.
    retention_cron: str = Field(default="17 * * * *", alias="PERSAIS_RETENTION_CRON")
    retention_inbox_days: float = Field(
        default=14, alias="PERSAIS_RETENTION_INBOX_DAYS", ge=3, le=3650
    )
    retention_jobs_days: float = Field(
        default=7, alias="PERSAIS_RETENTION_JOBS_DAYS", ge=1, le=3650
    )
    retention_outbox_days: float = Field(
        default=7, alias="PERSAIS_RETENTION_OUTBOX_DAYS", ge=1, le=3650
    )
    retention_approvals_days: float = Field(
        default=30, alias="PERSAIS_RETENTION_APPROVALS_DAYS", ge=1, le=3650
    )
    retention_refusals_days: float = Field(
        default=30, alias="PERSAIS_RETENTION_REFUSALS_DAYS", ge=0, le=3650
    )
    retention_agent_state_days: float = Field(
        default=30, alias="PERSAIS_RETENTION_AGENT_STATE_DAYS", ge=1, le=3650
    )
    retention_releases_keep: int = Field(
        default=5, alias="PERSAIS_RETENTION_RELEASES_KEEP", ge=1, le=1000
    )
    git_commit: str | None = Field(default=None, alias="PERSAIS_GIT_COMMIT")
    log_level: str = Field(default="INFO", alias="PERSAIS_LOG_LEVEL")

    def admin_chat(self) -> int | None:
        """The Telegram chat that hears about GitHub: new pull requests, reviews, merges."""
        if self.telegram_bot_token is None:
            return None
        if self.telegram_admin_chat is not None:
            return self.telegram_admin_chat
        return self.telegram_admins[0] if self.telegram_admins else None

    @field_validator("telegram_allowed_users", "telegram_admins", mode="before")
    @classmethod
    def _split_ids(cls, value: Any) -> Any:
        return _ids(value)

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        try:  # a postgresql:// URL or libpq "key=value" pairs: whatever libpq accepts
            conninfo_to_dict(value.get_secret_value())
        except psycopg.ProgrammingError:
            raise ValueError("expected a postgresql:// URL") from None
        return value

    @field_validator(
        "github_api_url",
        "telegram_api_url",
        "llm_api_base",
        "fly_api_url",
        "embeddings_api_base",
        "public_url",
    )
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("http://", "https://")) or len(value) < 10:
            raise ValueError(f"expected an http(s) URL, got {value!r}")
        return value.rstrip("/")

    @field_validator("home_repo")
    @classmethod
    def _owner_name(cls, value: str | None) -> str | None:
        if value is not None and not _REPO_RE.match(value):
            raise ValueError(f"expected owner/name, got {value!r}")
        return value

    @field_validator("telegram_bot_token")
    @classmethod
    def _token_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not _TELEGRAM_TOKEN_RE.match(value.get_secret_value()):
            raise ValueError("expected a bot token shaped like 123456:ABC-... (from @BotFather)")
        return value

    @field_validator("telegram_webhook_secret")
    @classmethod
    def _secret_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not _TELEGRAM_SECRET_RE.match(value.get_secret_value()):
            raise ValueError(
                "expected 1-256 characters of A-Z, a-z, 0-9, _ and - (Telegram's rule)"
            )
        return value

    @field_validator("telegram_mode")
    @classmethod
    def _telegram_mode(cls, value: str | None) -> str | None:
        if value is not None and value.lower() not in {"polling", "webhook"}:
            raise ValueError(f"expected polling or webhook (or unset: ask Telegram), got {value!r}")
        return None if value is None else value.lower()

    @field_validator("fly_app_name")
    @classmethod
    def _fly_app(cls, value: str | None) -> str | None:
        if value is not None and not _FLY_APP_RE.match(value):
            raise ValueError(
                f"expected a Fly app name (lowercase letters, digits, -), got {value!r}"
            )
        return value

    @field_validator("release")
    @classmethod
    def _release(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[0-9a-f]{40}", value):
            raise ValueError("expected a full 40-character commit id (lowercase hex)")
        return value

    @field_validator("retention_cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        from croniter import croniter  # type: ignore[import-untyped]  # procrastinate's

        if len(value.split()) != 5 or not croniter.is_valid(value):
            raise ValueError(f"expected a 5-field cron expression like '17 * * * *', got {value!r}")
        return value

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        upper = value.upper()
        if upper not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("expected one of DEBUG, INFO, WARNING, ERROR")
        return upper

    @field_validator("github_private_key")
    @classmethod
    def _unescape_key(cls, value: SecretStr | None) -> SecretStr | None:
        # A PEM pasted into a single-line variable usually arrives with literal "\n".
        if value is not None and "\\n" in value.get_secret_value():
            return SecretStr(value.get_secret_value().replace("\\n", "\n"))
        return value

    @model_validator(mode="after")
    def _pairs(self) -> Settings:
        if self.github_app_id is not None and not (
            self.github_private_key or self.github_private_key_path
        ):
            raise _MissingPair("GITHUB_PRIVATE_KEY", "required when GITHUB_APP_ID is set")
        if self.home_repo is not None and self.github_app_id is None:
            raise _MissingPair("GITHUB_APP_ID", "required when PERSAIS_HOME_REPO is set")
        if self.fly_api_token is not None and self.fly_app_name is None:
            raise _MissingPair("FLY_APP_NAME", "required when FLY_API_TOKEN is set")
        if self.telegram_webhook_secret is not None and self.telegram_bot_token is None:
            raise _MissingPair("TELEGRAM_BOT_TOKEN", "required when TELEGRAM_WEBHOOK_SECRET is set")
        return self

    # Derived values -------------------------------------------------------------------

    @property
    def home(self) -> Path:
        return self.persais_home.expanduser().resolve()

    @property
    def telegram_bot_id(self) -> int | None:
        if self.telegram_bot_token is None:
            return None
        return int(self.telegram_bot_token.get_secret_value().split(":", 1)[0])

    def resolved_aider_bin(self) -> Path | None:
        """AIDER_BIN, else the project's own Aider virtualenv, else `aider` on PATH."""
        if self.aider_bin is not None:
            return self.aider_bin
        for candidate in AIDER_CANDIDATES:
            if candidate.exists():
                return candidate
        found = shutil.which("aider")
        return Path(found) if found else None

    def embeddings(self) -> tuple[str, str, str] | None:
        """(api base, key, model) for embeddings, or None: memory uses full text alone.
        The base and key default to the model's (LLM_API_BASE, LLM_API_KEY)."""
        if self.embeddings_model is None:
            return None
        key = self.embeddings_api_key or self.llm_api_key
        return (
            self.embeddings_api_base or self.llm_api_base,
            key.get_secret_value() if key else "",
            self.embeddings_model,
        )

    @property
    def fly_configured(self) -> bool:
        """Deploys move Fly machines (else the local deployer reloads in process)."""
        return self.fly_api_token is not None and self.fly_app_name is not None

    def resolved_agents_dir(self) -> Path:
        """PERSAIS_AGENTS_DIR, else `dynamic/agents` of this checkout (or image)."""
        return self.agents_dir or CHECKOUT_ROOT / "dynamic" / "agents"

    def secrets(self) -> list[str]:
        """Every secret value configured (for `mechanic.redaction`): none may leave in text."""
        values = [v.get_secret_value() for v in self.__dict__.values() if isinstance(v, SecretStr)]
        if self.database_url is not None:  # the password inside the URL, on its own too
            values.append(str(conninfo_to_dict(self.database_url.get_secret_value()).get(
                "password") or ""))  # fmt: skip
        key_file = self.github_private_key_path
        if self.github_private_key is None and key_file is not None and key_file.is_file():
            values.append(key_file.read_text())
        return [v for v in values if v]

    def private_key_pem(self) -> str | None:
        if self.github_private_key is not None:
            return self.github_private_key.get_secret_value()
        if self.github_private_key_path is not None:
            return self.github_private_key_path.read_text()
        return None


class _MissingPair(ValueError):
    def __init__(self, variable: str, message: str) -> None:
        super().__init__(f"{variable}: {message}")
        self.variable = variable


class SettingsError(Exception):
    """A configuration problem, already phrased as one line for a person."""


def load_settings(env_file: Path | None = None, **overrides: Any) -> Settings:
    """Read the environment (and an optional `.env`), or raise one readable `SettingsError`."""
    try:
        return Settings(_env_file=env_file, **overrides)
    except ValidationError as exc:
        raise SettingsError(_first_problem(exc)) from None


def _first_problem(exc: ValidationError) -> str:
    error = exc.errors(include_url=False, include_input=False)[0]
    location = [str(part) for part in error["loc"]]
    message = str(error["msg"]).removeprefix("Value error, ")
    if not location:
        # A model-level check; its message already starts with the variable's name.
        return message
    variable = location[0]
    field = Settings.model_fields.get(variable)
    if field is not None and field.alias:
        variable = field.alias
    return f"{variable}: {message}"
