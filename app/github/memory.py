"""Memory on GitHub: `/ask` in comments, a reply disputing a review comment as a lesson,
and the index following pushes to default branches and new installations."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from psycopg_pool import AsyncConnectionPool

from app.github.client import GitHubApp
from app.github.once import first_time
from app.memory import lessons
from app.review import fingerprints
from app.review.config import CONFIG_PATH, parse
from app.review.pull import PullOnGitHub
from app.routing import Event
from app.settings import Settings

if TYPE_CHECKING:
    from app.conversations import Conversations

log = logging.getLogger(__name__)
Say = Callable[[str, str], Awaitable[None]]  # (conversation, text) -> into the outbox


class MemoryOnGitHub:
    def __init__(
        self, settings: Settings, pool: AsyncConnectionPool, app: GitHubApp,
        conversations: Callable[[], Awaitable[Conversations]], *, say: Say,
    ) -> None:  # fmt: skip
        self.settings = settings
        self.pool = pool
        self.app = app
        self._conversations = conversations
        self._say = say

    async def lessons_for(self, repository: str, paths: list[str]) -> list[str]:
        """The reviewer's lessons for `paths` of `repository`."""
        return await (await self._conversations()).memory.lessons_for(repository, paths)

    async def ask(
        self, question: str, conversation: str, login: str, comment_id: int, payload: Any
    ) -> str:
        if not question:
            await self._say(conversation, "Ask about the code: `/ask How is a webhook verified?`")
            return "ask: no question"
        if not await first_time(self.pool, f"ask:{comment_id}"):
            return "ask: answered before"
        memory = (await self._conversations()).memory
        repository = payload.get("repository") or {}
        full_name = str(repository.get("full_name") or "")
        # Answers come from the index of the repository the comment is in, never another's:
        # a comment thread can be read by people the other repository is closed to.
        if full_name != memory.home and full_name not in await memory.indexed():
            await self._say(
                conversation,
                f"I answer questions about code I have indexed, and {full_name} is not indexed."
                f" To have it indexed, add `memory: {{index: true}}` to `{CONFIG_PATH}` on its"
                " default branch.",
            )
            return "ask: repository not indexed"
        answer = await memory.ask(question, asked_by=f"github:{login}", repository=full_name)
        linked = answer.text
        if repository.get("html_url"):
            linked = _linked(answer.text, answer.references, str(repository["html_url"]),
                             answer.commit)  # fmt: skip
        await self._say(conversation, linked)
        return "ask: answered" if answer.known else "ask: not known"

    async def reply_to_review(self, payload: Any, comment: Any, login: str) -> str:
        """A reply to one of the reviewer's comments that says it is wrong: a lesson for
        that file, from someone who may write to the repository."""
        body = str(comment.get("body") or "")
        if not lessons.disputes(body):
            return "ignored: a reply, not a dispute"
        installation = (payload.get("installation") or {}).get("id")
        if installation is None:
            return "ignored: no installation"
        owner, repo = str(payload["repository"]["full_name"]).split("/", 1)
        if not await self.app.may_command(int(installation), owner, repo, login):
            return "ignored: a dispute from someone who may not write here"
        client = self.app.installation(int(installation))
        response = await client.rest.pulls.async_get_review_comment(
            owner, repo, int(comment["in_reply_to_id"])
        )
        original: dict[str, Any] = dict(response.json())
        if str((original.get("user") or {}).get("login")) != await self.app.bot_login():
            return "ignored: a reply to a person's comment"
        path = str(comment.get("path") or original.get("path") or "")
        said = " ".join(fingerprints.split(str(original.get("body") or ""))[0].split())[:300]
        text = (f"A review comment on {path} said: \"{said}\" — {login} disputed it: "
                f"\"{' '.join(body.split())[:600]}\"")  # fmt: skip
        memory = (await self._conversations()).memory
        lesson = await memory.teach(
            text, by=f"github:{login}", source="dispute", paths=(path,) if path else (),
            subject=f"comment:{owner}/{repo}:{comment['id']}", repository=f"{owner}/{repo}",
        )  # fmt: skip
        if lesson is None:
            return "dispute: noted before"
        number = int((payload.get("pull_request") or {}).get("number") or 0)
        await client.rest.pulls.async_create_reply_for_review_comment(
            owner, repo, number, int(comment["in_reply_to_id"]),
            body=f"Thanks, @{login}: noted as lesson #{lesson.id} for `{path}`. Later reviews "
            "of it take it into account (an admin can retire it with `/lessons retire "
            f"{lesson.id}` in the Persais chat).",
        )  # fmt: skip
        return f"dispute: lesson {lesson.id}"

    async def on_push(self, event: Event) -> str:
        """A push to a repository's default branch: its index follows (home, or enabled)."""
        payload = event.payload
        repository = payload.get("repository") or {}
        default = repository.get("default_branch") or repository.get("master_branch")
        if payload.get("deleted") or payload.get("ref") != f"refs/heads/{default}":
            return "ignored: not the default branch"
        full_name = str(repository.get("full_name") or "")
        installation = (payload.get("installation") or {}).get("id")
        if not await self._indexed(full_name, installation, str(default)):
            return "ignored: memory is off for this repository"
        await (await self._conversations()).memory.request_index(full_name)
        return f"index: {full_name}"

    async def on_installed(self, event: Event) -> list[str]:
        """Installed (or given more repositories): index the ones memory covers."""
        payload = event.payload
        if event.action not in ("created", "added", "new_permissions_accepted"):
            return []
        installation = (payload.get("installation") or {}).get("id")
        queued = []
        for repo in payload.get("repositories") or payload.get("repositories_added") or []:
            full_name = str(repo.get("full_name") or "")
            try:
                if await self._indexed(full_name, installation, None):
                    await (await self._conversations()).memory.request_index(full_name)
                    queued.append(full_name)
            except Exception:  # one repository's trouble must not stop the others
                log.exception("could not decide on indexing %s", full_name)
        return queued

    async def _indexed(self, full_name: str, installation: Any, default: str | None) -> bool:
        """The home repository always; another when its `.github/persais.yml` (on the
        default branch) says `memory: index: true`."""
        if full_name == self.settings.home_repo:
            return True
        if installation is None or "/" not in full_name:
            return False
        client = self.app.installation(int(installation))
        if default is None:
            owner, repo = full_name.split("/", 1)
            default = str((await client.rest.repos.async_get(owner, repo)).json()["default_branch"])
        text, _ = await PullOnGitHub(client, full_name, 0, "").read(CONFIG_PATH, default)
        return parse(text).config.memory.index


def _linked(text: str, references: tuple[str, ...], html_url: str, commit: str | None) -> str:
    """`path:10-20` in an answer as a link to those lines on GitHub, at the indexed commit."""
    if commit is None:
        return text
    for where in references:
        path, _, lines = where.rpartition(":")
        start, _, end = lines.partition("-")
        anchor = f"#L{start}" + (f"-L{end}" if end else "")
        link = f"[`{where}`]({html_url}/blob/{commit}/{path}{anchor})"
        text = text.replace(where, link, 1)
    return text
