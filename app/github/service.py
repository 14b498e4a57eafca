"""The GitHub App at work in a worker: reviews on pull request events, commands in
comments, the GitHub channel for Mechanic jobs asked from a thread, news for the chat, and
the redelivery sweep. Built on first use (githubkit is not imported by the web process).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from psycopg_pool import AsyncConnectionPool

from app import audit, outbox, refusals
from app.costs.books import Costs
from app.github import commands
from app.github.channel import GitHubChannel, thread
from app.github.client import GitHubApp
from app.github.memory import MemoryOnGitHub
from app.github.notices import ChatNotices
from app.github.once import first_time
from app.github.redeliver import Sweep, sweep
from app.review import ignores, pauses
from app.review.describe import Describer, DescribeRequest
from app.review.fixes import SuggestionFixes
from app.review.reviewer import Outcome, Reviewer, ReviewRequest
from app.routing import Event
from app.settings import Settings

if TYPE_CHECKING:
    from app.conversations import Conversations

log = logging.getLogger(__name__)
REVIEWED_ACTIONS = frozenset({"opened", "reopened", "ready_for_review", "synchronize"})


class GitHubService:
    def __init__(
        self,
        settings: Settings,
        pool: AsyncConnectionPool,
        conversations: Callable[[], Awaitable[Conversations]],
        *,
        app: GitHubApp | None = None,
    ) -> None:
        from app.mechanic_jobs.composed import github_app
        from mechanic.llm import ChatModel

        self.settings = settings
        self.pool = pool
        self.app = app or github_app(settings)
        self._conversations = conversations
        key = settings.llm_api_key
        model = (
            ChatModel(settings.llm_api_base, key.get_secret_value(), settings.llm_model)
            if key is not None
            else None
        )
        self.notices = ChatNotices(settings, pool, self._orchestrator)
        self.memory = MemoryOnGitHub(settings, pool, self.app, conversations, say=self._say)
        self.reviewer = Reviewer(
            pool, self.app, model, notify=self.notices.review, lessons=self.memory.lessons_for,
            costs=Costs.of(settings, pool),
        )  # fmt: skip
        self.describer = Describer(pool, self.app, model, costs=self.reviewer.costs)
        self.fixes = SuggestionFixes(pool, self.app, mechanic=self._mechanic_fix)
        self._channel: GitHubChannel | None = None

    async def _orchestrator(self) -> Any:
        return (await self._conversations()).orchestrator

    async def channel(self) -> GitHubChannel:
        if self._channel is None:
            self._channel = GitHubChannel(self.app, await self._orchestrator())
        return self._channel

    # --- pull requests ------------------------------------------------------------------

    async def on_pull_request(self, event: Event) -> Outcome | None:
        payload = event.payload
        pull = payload["pull_request"]
        repository = str(payload["repository"]["full_name"])
        sender = str((payload.get("sender") or {}).get("login") or "?")
        if event.action == "closed" and sender == await self.app.bot_login():
            sender = ""  # the App merged it for a Deploy, which says what became of it
        await self.notices.pull_request(
            event.action or "", pull, repository, event.delivery_id, sender
        )
        if event.action not in REVIEWED_ACTIONS:
            return None
        if pull.get("draft"):
            log.info("%s#%s is a draft: reviewed when ready", repository, pull["number"])
            return None
        installation = (payload.get("installation") or {}).get("id")
        if installation is None:
            log.warning("pull_request %s without an installation: ignored", event.delivery_id)
            return None
        outcome = await self.reviewer.review(
            ReviewRequest(
                installation_id=int(installation),
                repository=repository,
                number=int(pull["number"]),
                head_sha=str(pull["head"]["sha"]),
                trigger=event.action or "",
                delivery=event.delivery_id,
            )
        )
        # Its own step, after the review: a description that fails is logged, never retried
        # with the review (it is written again at the next push, or by `/describe`).
        await self.describer.automatic(
            DescribeRequest(int(installation), repository, int(pull["number"]), event.action or "")
        )
        return outcome

    # --- commands in comments -----------------------------------------------------------

    async def on_comment(self, event: Event) -> str:
        """Act on a command in a new comment; return what happened (for logs and tests)."""
        if event.action != "created":
            return "ignored: not a new comment"
        payload = event.payload
        comment = payload["comment"]
        user = comment.get("user") or {}
        login = str(user.get("login") or "")
        if user.get("type") == "Bot" or login == await self.app.bot_login():
            return "ignored: written by a bot"
        command = commands.parse(str(comment.get("body") or ""))
        if command is None:
            if event.name == "pull_request_review_comment" and comment.get("in_reply_to_id"):
                return await self.memory.reply_to_review(payload, comment, login)
            return "ignored: no command"
        installation = (payload.get("installation") or {}).get("id")
        if installation is None:
            return "ignored: no installation"
        owner, repo = str(payload["repository"]["full_name"]).split("/", 1)
        issue = payload.get("issue") or payload.get("pull_request") or {}
        number = int(issue["number"])
        on_pull = event.name == "pull_request_review_comment" or "pull_request" in issue
        client = self.app.installation(int(installation))
        comment_id = int(comment["id"])
        subject = f"github:{owner}/{repo}#{number}"

        if not await self.app.may_command(int(installation), owner, repo, login):
            # One polite refusal per person per repository per window; the rest are counted.
            window = timedelta(seconds=self.settings.refusal_window_seconds)
            async with self.pool.connection() as conn:
                verdict = await refusals.refuse(conn, f"github:{login}@{owner}/{repo}", window)
                if verdict.answer:
                    await audit.record(
                        conn,
                        actor=f"github:{login}",
                        action="github.command_refused",
                        subject=subject,
                        detail={
                            "command": command.name,
                            "comment": comment_id,
                            "refused_quietly": verdict.quietly_before,
                        },
                    )
            if verdict.answer and await first_time(self.pool, f"refused:{comment_id}"):
                await client.rest.issues.async_create_comment(
                    owner,
                    repo,
                    number,
                    body=f"Sorry @{login}, only people who may write to {owner}/{repo} can "
                    "give Persais commands.",
                )
            return "refused"

        if event.name == "pull_request_review_comment":
            await client.rest.reactions.async_create_for_pull_request_review_comment(
                owner, repo, comment_id, content="eyes"
            )
        else:
            await client.rest.reactions.async_create_for_issue_comment(
                owner, repo, comment_id, content="eyes"
            )
        async with self.pool.connection() as conn:
            await audit.record(
                conn,
                actor=f"github:{login}",
                action="github.command",
                subject=subject,
                detail={"command": command.name, "comment": comment_id},
            )

        conversation = thread(owner, repo, number)
        if command.name == "help":
            if await first_time(self.pool, f"help:{comment_id}"):
                await client.rest.issues.async_create_comment(
                    owner, repo, number, body=commands.HELP
                )
            return "help"
        if command.name == "review":
            if not on_pull:
                await self._say(conversation, "`/review` works on pull requests.")
                return "review: not a pull request"
            pull = (await client.rest.pulls.async_get(owner, repo, number)).json()
            outcome = await self.reviewer.review(
                ReviewRequest(
                    int(installation),
                    f"{owner}/{repo}",
                    number,
                    str(pull["head"]["sha"]),
                    "command",
                    f"comment:{comment_id}",
                    force=True,
                )
            )
            return f"review: {outcome.status}"
        if command.name in ("pause", "resume"):
            return await pauses.command(
                self.pool, client, command.name, f"{owner}/{repo}", number, login=login,
                comment_id=comment_id, on_pull=on_pull,
            )  # fmt: skip
        if command.name == "ignore":
            return await ignores.command(
                self.pool, client, f"{owner}/{repo}", number, comment, login=login,
                bot=await self.app.bot_login(),
            )  # fmt: skip
        if command.name == "describe":
            if not on_pull:
                await self._say(conversation, "`/describe` works on pull requests.")
                return "describe: not a pull request"
            request = DescribeRequest(int(installation), f"{owner}/{repo}", number, "command",
                                      actor=f"github:{login}")  # fmt: skip
            return f"describe: {(await self.describer.describe(request)).status}"
        if command.name == "fix":
            return await self.fixes.on_request(event.name, int(installation), payload, login)
        if command.name == "ask":
            return await self.memory.ask(command.argument, conversation, login, comment_id, payload)
        return await self._mechanic(command, conversation, login, comment_id, on_pull)

    async def _mechanic(
        self, command: commands.Command, conversation: str, login: str, comment_id: int,
        on_pull: bool,
    ) -> str:  # fmt: skip
        if not command.argument:
            await self._say(conversation, "Say what to build: `/mechanic Create an agent Echo "
                            "that repeats my messages`.")  # fmt: skip
            return "mechanic: no request"
        jobs = (await self._conversations()).mechanic
        if not jobs.model_configured:
            await self._say(conversation, "The Mechanic needs a model (LLM_API_KEY), and none "
                            "is configured here.")  # fmt: skip
            return "mechanic: no model"
        if command.name == "mechanic-fix":
            return await self._fix(command, conversation, login, comment_id, on_pull)
        if not await first_time(self.pool, f"mechanic:{comment_id}"):
            return "mechanic: started before"
        job = await jobs.start(
            conversation=conversation, user=f"github:{login}", request=command.argument
        )
        return f"mechanic: job {job}"

    async def _fix(
        self, command: commands.Command, conversation: str, login: str, comment_id: int,
        on_pull: bool,
    ) -> str:  # fmt: skip
        repository, _, number = conversation.removeprefix("gh:").partition("#")
        if not on_pull or repository != self.settings.home_repo:
            home = self.settings.home_repo or "not configured"
            await self._say(
                conversation,
                f"`/mechanic fix` works on pull requests of the home repository ({home}).",
            )
            return "fix: not a home pull request"
        if not await first_time(self.pool, f"mechanic:{comment_id}"):
            return "fix: started before"
        jobs = (await self._conversations()).mechanic
        job = await jobs.start(
            conversation=conversation,
            user=f"github:{login}",
            request=command.argument,
            fix_pr=int(number),
        )
        return f"fix: job {job}"

    async def _mechanic_fix(
        self, repository: str, number: int, login: str, request: str
    ) -> str | None:
        """`/fix` on a Persais finding without a suggestion: a Mechanic fix job on the pull
        request's branch, if it is the home repository's and a model is configured."""
        if repository != self.settings.home_repo or self.settings.llm_api_key is None:
            return None
        owner, repo = repository.split("/", 1)
        jobs = (await self._conversations()).mechanic
        return await jobs.start(
            conversation=thread(owner, repo, number), user=f"github:{login}",
            request=request, fix_pr=number,
        )  # fmt: skip

    async def _say(self, conversation: str, text: str) -> None:
        async with self.pool.connection() as conn:
            await outbox.put(conn, conversation, text)

    # --- periodic -----------------------------------------------------------------------

    async def deliver_outbox(self) -> int:
        return await outbox.deliver(self.pool, (await self.channel()).show_note, prefix="gh:")

    async def sweep_redeliveries(self) -> Sweep:
        return await sweep(self.app, self.pool)
