"""The GitHub channel: what Persais says in a `gh:<owner>/<repo>#<n>` conversation becomes a
comment in that issue or pull request thread; a progress line edits its comment in place.

GitHub has no buttons: a question's link choices become links, and the others are named
with where to answer them (the chat, for now)."""

from __future__ import annotations

import re
from typing import Any

from app.github.client import GitHubApp
from app.orchestrator.orchestrator import Orchestrator
from app.outbox import Note

_THREAD = re.compile(r"^gh:([\w.-]+)/([\w.-]+)#(\d+)$")


def thread(owner: str, repo: str, number: int) -> str:
    return f"gh:{owner}/{repo}#{number}"


class GitHubChannel:
    def __init__(self, app: GitHubApp, orchestrator: Orchestrator | None) -> None:
        self.app = app
        self.orchestrator = orchestrator

    async def show_note(self, note: Note) -> dict[str, Any] | None:
        match = _THREAD.match(note.conversation)
        if match is None:
            return None  # not a GitHub thread: nothing this channel can do with it
        owner, repo, number = match.group(1), match.group(2), int(match.group(3))
        client = self.app.installation(await self.app.installation_for(owner, repo))
        text = await self._with_choices(note)
        if note.key is not None and note.channel_ref:
            await client.rest.issues.async_update_comment(
                owner, repo, int(note.channel_ref["comment_id"]), body=text
            )
            return None
        response = await client.rest.issues.async_create_comment(owner, repo, number, body=text)
        return {"comment_id": int(response.json()["id"])}

    async def _with_choices(self, note: Note) -> str:
        if not note.approval or self.orchestrator is None:
            return note.text[:65_000]
        question = await self.orchestrator.open_question(note.approval)
        if question is None:
            return note.text[:65_000]
        links = [f"[{c[1]}]({c[2]})" for c in question.choices if len(c) > 2 and c[2]]
        others = [c[1] for c in question.choices if not (len(c) > 2 and c[2])]
        lines = [note.text[:60_000], ""]
        if links:
            lines.append(" · ".join(links))
        if others:
            where = "from the Persais chat (Telegram) or its console"
            lines.append(f"_{' / '.join(others)}: {where}._")
        return "\n".join(lines)
