"""The Mechanic composed for this service: settings → forge, model, Aider, repository lock;
and the `jobs` table that records each job."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from app.deploy import granting
from app.forge.local import LocalForge
from app.forge.lock import repository_lock
from app.mechanic_jobs import home_repository
from app.settings import CHECKOUT_ROOT, Settings
from mechanic.aider import AiderModel
from mechanic.job import JobDeps, JobOutcome, Progress
from mechanic.llm import ChatModel
from mechanic.plan import Behaviour, Plan

if TYPE_CHECKING:  # githubkit loads only where the GitHub forge is used
    from app.forge.github import GitHubForge
    from app.github.client import GitHubApp

TEMPLATES = CHECKOUT_ROOT / "templates"


class MechanicUnavailable(RuntimeError):
    pass


_github_apps: dict[tuple[int, str], GitHubApp] = {}


def github_app(settings: Settings) -> GitHubApp:
    """One App client per process and App: its installation tokens are cached in it."""
    from app.github.client import GitHubApp

    assert settings.github_app_id is not None
    key = (settings.github_app_id, settings.github_api_url)
    if key not in _github_apps:
        _github_apps[key] = GitHubApp(settings)
    return _github_apps[key]


def forge(settings: Settings, pool: AsyncConnectionPool) -> LocalForge | GitHubForge:
    """The home repository: on GitHub through the App when PERSAIS_HOME_REPO is set,
    else the local forge."""
    if settings.home_repo is not None:
        from app.forge.github import GitHubForge

        return GitHubForge(github_app(settings), settings.home, settings.home_repo)
    return LocalForge(pool, settings.home, CHECKOUT_ROOT)


def job_deps(
    settings: Settings, pool: AsyncConnectionPool, progress: Progress, *, use_aider: bool = True
) -> JobDeps:
    if (no_home := home_repository.missing(settings)) is not None:
        raise MechanicUnavailable(no_home)
    aider = settings.resolved_aider_bin()
    if use_aider and (aider is None or settings.llm_api_key is None):
        raise MechanicUnavailable(
            "no model is configured (LLM_API_KEY); use --template-only to scaffold from the "
            "template alone"
        )
    key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else ""
    return JobDeps(
        forge=forge(settings, pool),
        model=ChatModel(settings.llm_api_base, key, settings.llm_model),
        aider_bin=aider or Path("aider"),
        aider_model=AiderModel(f"openai/{settings.llm_model}", settings.llm_api_base, key),
        templates=TEMPLATES,
        jobs_root=settings.home / "jobs",
        lock=repository_lock(pool, "persais"),
        progress=progress,
        use_aider=use_aider,
        grants=granting.for_worktrees(pool, settings),
    )


def template_plan(kind: str, name: str, command: str, description: str) -> Plan:
    """A plan for the template alone: its behaviour is the template's own."""
    class_name = "".join(part.capitalize() for part in name.split("_"))
    behaviour = {
        "agent": Behaviour(say="ping", expect=f"{class_name} received: ping"),
        "tool": Behaviour(say="a b", expect="a b"),
    }.get(kind)
    if behaviour is None:
        raise MechanicUnavailable(f"--template-only supports agent and tool, not {kind}")
    return Plan.model_validate(
        {
            "kind": kind,
            "name": name,
            "command": command,
            "description": description,
            "behaviour": [behaviour.model_dump()],
        }
    )


async def record_start(
    pool: AsyncConnectionPool, job_id: str, *, conversation: str, user: str, request: str
) -> None:
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO jobs (id, conversation, requested_by, request) VALUES (%s, %s, %s, %s)",
            (job_id, conversation, user, request),
        )


async def record_outcome(pool: AsyncConnectionPool, job_id: str, outcome: JobOutcome) -> None:
    pr = outcome.pull_request
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE jobs SET status = %s, plan = %s, branch = %s, pr_number = %s, pr_url = %s,"
            " head_sha = %s, rounds = %s, cost = %s, aider_seconds = %s, transcript = %s,"
            " message = %s, updated_at = now() WHERE id = %s",
            (
                outcome.status,
                Jsonb(outcome.plan.model_dump()) if outcome.plan else None,
                pr.branch if pr else None,
                pr.number if pr else None,
                pr.url if pr else None,
                pr.head_sha if pr else None,  # the head the Mechanic validated
                outcome.rounds,
                outcome.cost,
                sum(run.seconds for run in outcome.aider_runs),
                "\n\n".join(run.transcript for run in outcome.aider_runs)[-200_000:],
                outcome.message,
                job_id,
            ),
        )
