"""Memory composed for a process: settings → embedder, model, the home repository; what the
chat (`/ask`, `/lesson`, `/lessons`), the Mechanic, the reviewer and the deployer ask of it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from psycopg_pool import AsyncConnectionPool

from app import audit
from app.costs.books import Costs
from app.memory import answer, lessons, search, traces
from app.memory.embeddings import Embedder, EmbeddingError
from app.memory.index import GitRepository, Indexer, IndexReport
from app.memory.traces import Trace
from app.settings import Settings
from mechanic import redaction
from mechanic.guidance import Guidance

log = logging.getLogger(__name__)
LOCAL_HOME = "persais"  # the home repository's name on the local forge
MECHANIC_PATHS = ("dynamic/agents/*", "tests/dynamic/*")  # where the Mechanic may write

DeferIndex = Callable[[str], Awaitable[None]]  # DeliveryQueue.defer_index
Source = Callable[[str], Awaitable[Path]]  # repository -> its git directory, up to date


class Memory:
    def __init__(
        self, settings: Settings, pool: AsyncConnectionPool, *, defer: DeferIndex | None = None,
        source: Source | None = None, model: answer.Model | None = None,
    ) -> None:  # fmt: skip
        self.settings = settings
        self.pool = pool
        self.home = settings.home_repo or LOCAL_HOME
        endpoint = settings.embeddings()
        self.embedder = Embedder(*endpoint) if endpoint else None
        self.secrets = settings.secrets()  # cut out of files, questions and lessons
        self.indexer = Indexer(pool, self.embedder, secrets=self.secrets)
        self._defer = defer
        self._source = source or self._git_dir
        self.model = model if model is not None else _chat_model(settings)
        self.costs = Costs.of(settings, pool)  # /ask's model calls, counted per person

    # --- the index ------------------------------------------------------------------------

    async def request_index(self, repository: str | None = None) -> None:
        """Index `repository` (the home one by default) soon, in a worker (a process without
        a queue leaves it to the next /ask)."""
        if self._defer is not None:
            await self._defer(repository or self.home)

    async def index(self, repository: str | None = None) -> IndexReport:
        """Bring the index of `repository` to its default branch's head (the queue's task)."""
        repository = repository or self.home
        source = GitRepository(await self._source(repository))
        report = await self.indexer.index(repository, source, await source.head())
        async with self.pool.connection() as conn:
            await audit.record(
                conn, actor="persais", action="memory.indexed", subject=f"repo:{repository}",
                detail={"commit": report.commit, "read": report.read, "removed": report.removed,
                        "chunks": report.chunks, "embedded": report.embedded,
                        "forgotten": report.forgotten, "redacted": report.redacted,
                        "problem": report.problem or None},
            )  # fmt: skip
        return report

    async def _git_dir(self, repository: str) -> Path:
        from app.mechanic_jobs import composed

        if repository == self.home:
            return await composed.forge(self.settings, self.pool).repository()
        from app.forge.github import GitHubForge

        forge = GitHubForge(composed.github_app(self.settings), self.settings.home,
                            repository)  # fmt: skip
        return await forge.repository()

    async def state(self, repository: str | None = None) -> tuple[str, str | None]:
        """(status, indexed commit) of a repository's index: new | indexing | ready | failed."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT status, commit FROM memory_repositories WHERE repository = %s",
                (repository or self.home,),
            )
            row = await cur.fetchone()
        return (str(row[0]), row[1]) if row else ("new", None)

    # --- /ask -----------------------------------------------------------------------------

    async def ask(
        self, question: str, *, asked_by: str = "", repository: str | None = None
    ) -> answer.Answer:
        """An answer about `repository` (the home one by default) from its index."""
        repository = repository or self.home
        question = redaction.redact(" ".join(question.split())[:1000], self.secrets)
        status, commit = await self.state(repository)
        if commit is None and self._defer is None:  # no worker to build it: build it now
            commit = (await self.index(repository)).commit
        elif commit is None:
            await self.request_index(repository)
            why = "is being built" if status in ("new", "indexing") else "could not be built"
            return answer.Answer(f"The index of {repository} {why}; ask again in a minute.",
                                 (), False)  # fmt: skip
        hits = await self._search(repository, question)
        async with self.costs.account("ask", asked_by or "?"):  # a spent budget: the places
            reply = await self._answer(repository, question, commit, hits)
        async with self.pool.connection() as conn:
            await audit.record(
                conn, actor=asked_by or "?", action="memory.asked", subject=f"repo:{repository}",
                detail={"question": question[:300], "known": reply.known,
                        "references": list(reply.references)},
            )  # fmt: skip
        return reply

    async def indexed(self) -> list[str]:
        """The repositories with an index (ready or not)."""
        async with self.pool.connection() as conn:
            cur = await conn.execute("SELECT repository FROM memory_repositories ORDER BY 1")
            return [str(row[0]) for row in await cur.fetchall()]

    async def _answer(
        self, repository: str, question: str, commit: str | None, hits: list[search.Hit]
    ) -> answer.Answer:
        if not answer.confident(hits):
            return answer.not_known(repository, commit)
        if self.model is not None:
            try:
                written = await answer.written(self.model, repository, commit, question, hits)
            except Exception as exc:  # the model failing leaves the places standing
                log.warning("/ask: the model failed: %s", exc)
            else:
                if written is not None:
                    return written
        return answer.places(repository, commit, hits)

    async def _search(self, repository: str, question: str) -> list[search.Hit]:
        async with self.pool.connection() as conn:
            try:
                return await search.search(conn, repository, question, embedder=self.embedder)
            except EmbeddingError as exc:  # full text still answers
                log.warning("/ask without vectors: %s", exc)
                return await search.search(conn, repository, question)

    # --- lessons --------------------------------------------------------------------------

    async def teach(
        self, text: str, *, by: str, source: str = "command", paths: tuple[str, ...] | None = None,
        subject: str | None = None, repository: str | None = None,
    ) -> lessons.Lesson | None:  # fmt: skip
        found, text = lessons.parse(text) if paths is None else (paths, text)
        text = redaction.redact(text, self.secrets)  # it goes into prompts
        async with self.pool.connection() as conn:
            lesson = await lessons.add(
                conn, repository or self.home, text, found, source=source, by=by, subject=subject
            )
            if lesson is not None:
                await audit.record(
                    conn, actor=by, action="memory.lesson", subject=f"lesson:{lesson.id}",
                    detail={"source": source, "paths": list(found), "text": text[:300]},
                )  # fmt: skip
        return lesson

    async def active_lessons(self, repository: str | None = None) -> list[lessons.Lesson]:
        async with self.pool.connection() as conn:
            return await lessons.active(conn, repository or self.home)

    async def retire(self, lesson_id: int, *, by: str) -> bool:
        async with self.pool.connection() as conn:
            done = await lessons.retire(conn, lesson_id, by)
            if done:
                await audit.record(conn, actor=by, action="memory.lesson_retired",
                                   subject=f"lesson:{lesson_id}")  # fmt: skip
        return done

    async def lessons_for(self, repository: str, paths: list[str]) -> list[str]:
        """The lesson lines for a prompt about `paths` of `repository` (the reviewer's)."""
        async with self.pool.connection() as conn:
            found = await lessons.for_paths(conn, repository, paths)
        return [lesson.for_prompt() for lesson in found]

    # --- the Mechanic ---------------------------------------------------------------------

    async def guidance(
        self, request: str, paths: list[str] | None = None, *, job_id: str | None = None
    ) -> Guidance:
        """Past jobs like `request` and the lessons for `paths` (before a plan: wherever the
        Mechanic may write)."""
        try:
            async with self.pool.connection() as conn:
                try:
                    examples, warnings = await traces.similar(
                        conn, self.home, request, embedder=self.embedder, exclude=job_id
                    )
                except EmbeddingError:
                    examples, warnings = await traces.similar(
                        conn, self.home, request, exclude=job_id
                    )
                found = await lessons.for_paths(conn, self.home, paths or list(MECHANIC_PATHS))
        except Exception:  # memory is advice: a job goes on without it
            log.exception("memory could not advise job %s", job_id)
            return Guidance()
        return Guidance(
            examples=tuple(t.text() for t in examples),
            warnings=tuple(t.text() for t in warnings),
            lessons=tuple(lesson.for_prompt() for lesson in found),
        )

    async def job_finished(self, trace: Trace) -> None:
        async with self.pool.connection() as conn:
            try:
                await traces.record(conn, trace, self.home, self.embedder)
            except EmbeddingError as exc:  # stored; only its vector is missing
                log.warning("job %s: trace stored without a vector: %s", trace.job_id, exc)

    async def job_ended_badly(
        self, job_id: str, *, how: str, by: str, reason: str | None
    ) -> lessons.Lesson | None:
        """An aborted or rolled-back job: marked in its trace; with a reason, a lesson for
        the files it touched."""
        async with self.pool.connection() as conn:
            if how == "rollback":
                await traces.rolled_back(conn, job_id, reason)
            cur = await conn.execute("SELECT request, plan FROM jobs WHERE id = %s", (job_id,))
            job = await cur.fetchone()
            trace = await traces.get(conn, job_id)
        if not reason or job is None:
            return None
        files = (trace.files if trace else ()) or _planned_files(trace.plan if trace else job[1])
        request = trace.request if trace else str(job[0])
        did = "rolled back" if how == "rollback" else "aborted"
        text = f"Job {job_id} ({request[:150]}) was {did} by {by}: {reason}"
        return await self.teach(text, by=by, source=how, paths=files, subject=f"job:{job_id}")

    async def job_deployed(self, job_id: str) -> None:
        async with self.pool.connection() as conn:
            await traces.deployed(conn, job_id)


def _planned_files(plan: dict[str, Any] | None) -> tuple[str, ...]:
    name = (plan or {}).get("name")
    if not isinstance(name, str):
        return ()
    return (f"dynamic/agents/{name}/*", f"tests/dynamic/test_{name}.py")


def _chat_model(settings: Settings) -> answer.Model | None:
    if settings.llm_api_key is None:
        return None
    from mechanic.llm import ChatModel

    return ChatModel(settings.llm_api_base, settings.llm_api_key.get_secret_value(),
                     settings.llm_model)  # fmt: skip


def trace_of(job: Any, outcome: Any) -> Trace:
    """A trace from a finished job's record and its outcome (`mechanic.job.JobOutcome`)."""
    plan = outcome.plan.model_dump() if outcome.plan is not None else job.plan
    problems = "\n".join(outcome.report.problems[:10]) if outcome.report else ""
    return Trace(
        job_id=job.id, request=job.request, plan=plan, files=tuple(outcome.files),
        diff_summary=outcome.diff_summary, outcome=outcome.status, rounds=outcome.rounds,
        problems=problems or (outcome.message if outcome.status != "opened" else ""),
        deployed=False, rolled_back=False, rollback_reason=None,
    )  # fmt: skip
