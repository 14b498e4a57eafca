"""`/console/memory`: the `/ask` box, answered by the chat's own machinery (`Memory.ask`: the
index, the model when one is configured, `path:line` references checked against what was
retrieved), with each reference a link into the forge's files; and the lessons people taught,
which an admin retires as `/lessons retire <id>` does.

`/console/files/<commit>/<path>` shows a file of the local forge at a commit, each line an
anchor (`#L42`), for the references into it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from app.console import forge_files
from app.console.web import Console, admin_only, viewer_of
from app.memory import lessons

if TYPE_CHECKING:  # the web process imports Memory (and through it `mechanic`) on first /ask
    from app.memory.answer import Answer
    from app.memory.service import Memory

log = logging.getLogger(__name__)
NAV = [("Memory", "/console/memory")]
PAGE_SIZE = 50
SHOWN = {"active": False, "retired": True, "all": None}  # which lessons: retired or not


def routes(console: Console) -> list[BaseRoute]:
    memory: Memory | None = None

    def memory_of() -> Memory:
        """One Memory for the console, composed as the chat's (the runtime's queue builds
        the index; a process without one builds it on the first question)."""
        nonlocal memory
        if memory is None:
            from app.memory.service import Memory

            runtime = console.runtime
            defer = runtime.queue.defer_index if runtime is not None else None
            memory = Memory(console.settings, console.pool, defer=defer)
        return memory

    async def page(request: Request) -> Response:
        viewer = viewer_of(request)
        question = request.query_params.get("q", "").strip()[:1000]
        status = request.query_params.get("status", "active")
        status = status if status in SHOWN else "active"
        before = _number(request.query_params.get("before"))
        context: dict[str, Any] = {"q": question, "answer": None, "problem": None}
        if question:
            try:
                context.update(await _ask(console, memory_of(), question, viewer.person))
            except Exception:  # the page stays up; the log has the traceback
                log.exception("/ask from the console failed")
                context["problem"] = "The question could not be answered; the log says why."
        rows, older = await _lessons(console, status, before)
        return console.page(
            request, "memory.html", title="Memory", status_shown=status, lessons=rows,
            older=older, before=before, retired=_number(request.query_params.get("retired")),
            model=console.settings.llm_api_key is not None, **context,
        )  # fmt: skip

    async def retire(request: Request) -> Response:
        if (refused := admin_only(request)) is not None:
            return refused
        viewer = viewer_of(request)
        lesson_id = _number(str(request.path_params["lesson_id"]))
        async with console.pool.connection() as conn:
            done = lesson_id is not None and await lessons.retire(conn, lesson_id, viewer.person)
        if not done:
            return console.page(request, "memory_missing.html", status=404, title="Memory",
                                what=f"There is no active lesson #{lesson_id}.")  # fmt: skip
        await console.audit(viewer, "memory.lesson_retired", f"lesson:{lesson_id}")
        return RedirectResponse(f"/console/memory?retired={lesson_id}", status_code=303)

    async def file(request: Request) -> Response:
        commit, path = request.path_params["commit"], request.path_params["path"]
        try:
            lines = await forge_files.read(console.settings, commit, path)
        except forge_files.NotShown as missing:
            return console.page(request, "memory_missing.html", status=404, title="File",
                                what=str(missing))  # fmt: skip
        return console.page(request, "memory_file.html", title=path, commit=commit, file_path=path,
                            lines=forge_files.coloured(path, lines))  # fmt: skip

    return [
        Route("/memory", page, methods=["GET"]),
        Route("/memory/lessons/{lesson_id:int}/retire", retire, methods=["POST"]),
        Route("/files/{commit}/{path:path}", file, methods=["GET"]),
    ]


async def _ask(console: Console, memory: Memory, question: str, person: str) -> dict[str, Any]:
    """Ask as the chat asks (`/ask owner/repo …` for another indexed repository)."""
    first, _, rest = question.partition(" ")
    repository = memory.home
    if "/" in first and rest and first in await memory.indexed():
        repository, question = first, rest
    answer: Answer = await memory.ask(question, asked_by=person, repository=repository)
    settings = console.settings
    sources = []
    for where in answer.references:
        path, _, lines = where.rpartition(":")
        start, _, end = lines.partition("-")
        if answer.commit is not None and start.isdigit():
            href = forge_files.link(settings, repository, answer.commit, path, int(start),
                                    int(end) if end.isdigit() else None)  # fmt: skip
            sources.append((where, href))
    pieces = forge_files.pieces(answer.text, answer.references, settings, repository,
                                answer.commit)  # fmt: skip
    return {"answer": answer, "repository": repository, "pieces": pieces, "sources": sources}


async def _lessons(
    console: Console, status: str, before: int | None
) -> tuple[list[tuple[Any, ...]], int | None]:
    """A page of lessons, newest first; the id to page on from, if there are older ones."""
    async with console.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT id, repository, text, paths, source, created_by, created_at, retired_at,"
            " retired_by FROM lessons"
            " WHERE (%(retired)s::boolean IS NULL OR (retired_at IS NOT NULL) = %(retired)s)"
            " AND (%(before)s::bigint IS NULL OR id < %(before)s) ORDER BY id DESC LIMIT %(n)s",
            {"retired": SHOWN[status], "before": before, "n": PAGE_SIZE + 1},
        )
        rows = await cur.fetchall()
    older = int(rows[PAGE_SIZE - 1][0]) if len(rows) > PAGE_SIZE else None
    return rows[:PAGE_SIZE], older


def _number(value: str | None) -> int | None:
    if value is None or not value.isdigit() or not 0 < int(value) < 2**62:
        return None
    return int(value)
