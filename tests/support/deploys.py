"""A Persais process with a worker, for deploy tests, and Mechanic pull requests made the
quick way: real commits on a branch of the local forge's bare repository, published through
the forge, recorded as an opened job with the head it validated — what a finished Mechanic
job leaves behind, without running Aider."""

from __future__ import annotations

import asyncio
import logging
import secrets
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from app.agents.base import AgentContext, Choice, Reply
from app.agents.registry import Registry
from app.conversations import Conversations
from app.deploy.files import materialise
from app.forge.local import LocalForge
from app.runtime import Runtime
from app.settings import CHECKOUT_ROOT, Settings
from app.worker.queue import MECHANIC_QUEUE
from tests.support import conversation
from tests.support.hosts import launcher

ECHO_AGENT = """from app.agents.base import Agent, AgentContext, Message, Reply


class Echo(Agent):
    async def handle(self, message: Message, ctx: AgentContext) -> Reply | str:
        return f"Echo: {message.text}"
"""


def manifest(name: str, description: str = "test agent") -> str:
    return (
        f'name = "{name}"\ncommand = "{name}"\ndescription = "{description}"\nversion = "0.1.0"\n'
    )


def generated_test(name: str, say: str, expect: str) -> str:
    return (
        "import asyncio\n\nfrom app.agents.testing import ask, load_agent\n\n\n"
        f"def test_{name}() -> None:\n    async def run() -> None:\n"
        f'        agent = await load_agent("{name}")\n'
        f"        assert (await ask(agent, {say!r})).text == {expect!r}\n\n"
        "    asyncio.run(run())\n"
    )


def agent_files(name: str, code: str, say: str, expect: str) -> dict[str, str]:
    return {
        f"dynamic/agents/{name}/agent.toml": manifest(name),
        f"dynamic/agents/{name}/agent.py": code,
        f"tests/dynamic/test_{name}.py": generated_test(name, say, expect),
    }


ECHO = agent_files("echo", ECHO_AGENT, "Hello", "Echo: Hello")


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return done.stdout.strip()


def commit_on(bare: Path, branch: str, base: str, files: dict[str, str], message: str) -> str:
    """Commit `files` on `branch` (made from `base` if new) of a bare repository."""
    work = bare.parent / f".work-{secrets.token_hex(3)}"
    exists = subprocess.run(
        ["git", "-C", str(bare), "rev-parse", "--verify", "-q", f"refs/heads/{branch}"],
        capture_output=True,
    ).returncode == 0  # fmt: skip
    if exists:
        git(bare, "worktree", "add", "-q", str(work), branch)
    else:
        git(bare, "worktree", "add", "-q", "-b", branch, str(work), base)
    for path, text in files.items():
        (work / path).parent.mkdir(parents=True, exist_ok=True)
        (work / path).write_text(text)
    git(work, "add", "-A")
    git(work, "commit", "-qm", message)
    head = git(work, "rev-parse", "HEAD")
    git(bare, "worktree", "remove", "--force", str(work))
    return head


async def mechanic_pull(
    convo: Conversations, settings: Settings, files: dict[str, str], *, user: str = "cli:ada",
    conversation: str | None = None,
) -> tuple[str, int, str]:  # fmt: skip
    """A pull request as a finished Mechanic job leaves it: (job id, number, head)."""
    job = secrets.token_hex(4)
    forge = LocalForge(convo.pool, settings.home, CHECKOUT_ROOT)
    bare = await forge.repository()
    branch = f"mechanic/{job}"
    head = commit_on(bare, branch, "main", files, f"Add {job}")
    pull = await forge.publish(
        job_id=job, branch=branch, head_sha=head, base="main", title=f"Add {job}", body="test"
    )
    async with convo.pool.connection() as conn:
        await conn.execute(
            "INSERT INTO jobs (id, conversation, requested_by, request, status, branch,"
            " pr_number, pr_url, head_sha) VALUES (%s, %s, %s, 'test', 'opened', %s, %s, %s, %s)",
            (job, conversation or user, user, branch, pull.number, pull.url, head),
        )
    return job, pull.number, head


async def offer_deploy(convo: Conversations, job: str, user: str = "cli:ada") -> str:
    """The job's [Deploy] [Abort] [View PR] question, as the Mechanic asks it; its id."""
    question = await convo.orchestrator.ask(
        user, "mechanic",
        Reply("PR open", (Choice("deploy", "Deploy"), Choice("abort", "Abort")),
              question=f"pr:{job}"),
        requested_by=user,
    )  # fmt: skip
    return question.id


async def say(
    convo: Conversations, text: str, *, user: str = "cli:ada", admin: bool = False
) -> list[str]:
    return [reply.text for reply in await conversation.say(convo, text, user=user, admin=admin)]


async def press_deploy(convo: Conversations, job: str, user: str = "cli:ada") -> None:
    """Press [Deploy] under the job's pull request, as its asker."""
    await convo.orchestrator.press(await offer_deploy(convo, job), "deploy", user=user, admin=False)


async def outcome(convo: Conversations, conversation: str = "cli:ada", within: float = 60) -> str:
    """Wait for every deploy asked for in `conversation` to end; the last result said."""
    end = asyncio.get_running_loop().time() + within
    while await convo.deployments.active_in(conversation):
        if asyncio.get_running_loop().time() > end:
            raise TimeoutError("the deploy did not finish")
        await asyncio.sleep(0.05)
    async with convo.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT text FROM outbox WHERE conversation = %s AND key LIKE 'deploy:%%:result'"
            " ORDER BY updated_at DESC, id DESC LIMIT 1",
            (conversation,),
        )
        row = await cur.fetchone()
    return str(row[0]) if row else ""


@asynccontextmanager
async def persais(settings: Settings, database: str) -> AsyncIterator[Conversations]:
    """Conversations in a process whose worker takes Mechanic jobs and deploys."""
    runtime = Runtime(settings, database)
    runtime.worker_queues = (MECHANIC_QUEUE,)
    await runtime.start(worker=True)
    try:
        yield await runtime.conversations()
    finally:
        await runtime.stop()


def machine_boot(
    bare: Path, home: Path, image_agents: Path
) -> Callable[[str, dict[str, str]], dict[str, Any]]:
    """What a Fly machine running Persais does on boot, for the fake Fly: sync `dynamic/` at
    its PERSAIS_RELEASE (our own code, from the forge's repository, into a disk of its own)
    and load the agents; its /ready then reports the release and the agents."""

    def boot(machine_id: str, env: dict[str, str]) -> dict[str, Any]:
        async def run() -> dict[str, Any]:
            sha = env.get("PERSAIS_RELEASE") or None
            agents = image_agents
            if sha is not None:
                agents = (await materialise(bare, sha, home / machine_id)).agents
            registry = Registry(agents, [], _context, launcher(), commit=sha or "image")
            loaded = await registry.reload()
            await registry.close()
            return {"ready": True, "release": {"sha": sha}, "agents": loaded.describe()}

        return asyncio.run(run())

    return boot


def _context(name: str, permissions: frozenset[str]) -> AgentContext:
    return AgentContext(name, permissions, logging.getLogger(f"agent.{name}"), {})
