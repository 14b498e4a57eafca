"""Memory on the embedded Postgres: the index of Persais's own repository, incremental
re-indexing after a push, full text alone and hybrid retrieval (the scripted model server's
/v1/embeddings), lessons for paths, job traces as examples and warnings, and /ask, /lesson,
/lessons through the real orchestrator."""

from __future__ import annotations

import asyncio
import itertools
import random
import string
import subprocess
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from psycopg_pool import AsyncConnectionPool

from app.memory import lessons, search, traces
from app.memory.chunking import chunk
from app.memory.embeddings import Embedder
from app.memory.index import GitRepository, Indexer, IndexReport
from app.memory.service import Memory
from app.memory.traces import Trace
from app.settings import CHECKOUT_ROOT, Settings
from tests.support.conversation import conversations, say
from tests.support.pools import open_pool
from tests.support.scripted_llm import scripted_llm

T = TypeVar("T")
OWN = GitRepository(CHECKOUT_ROOT / ".git")


def with_pool(database: str, body: Callable[[AsyncConnectionPool], Awaitable[T]]) -> T:
    async def run() -> T:
        async with open_pool(database) as pool:
            return await body(pool)

    return asyncio.run(run())


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip


def clone_of_persais(tmp_path: Path) -> Path:
    repo = tmp_path / "persais"
    subprocess.run(["git", "clone", "-q", str(CHECKOUT_ROOT), str(repo)], check=True)
    return repo


# --- chunking -----------------------------------------------------------------------------


def test_python_is_cut_along_functions_classes_and_methods() -> None:
    source = (CHECKOUT_ROOT / "app" / "memory" / "index.py").read_text()
    chunks = chunk("app/memory/index.py", source)
    by_symbol = {c.symbol: c for c in chunks}
    # A long class is cut into its methods, each exactly its own lines (with decorators).
    method = by_symbol["Indexer.index"]
    lines = source.splitlines()
    assert lines[method.start_line - 1].strip().startswith("async def index(")
    assert method.kind == "method"
    assert method.content == "\n".join(lines[method.start_line - 1 : method.end_line])
    assert by_symbol["_count_terms"].kind == "function"
    assert by_symbol["app.memory.index"].kind == "module"  # docstring and imports
    # Chunks never overlap, and together they cover every definition.
    spans = sorted((c.start_line, c.end_line) for c in chunks)
    assert all(a[1] < b[0] for a, b in itertools.pairwise(spans))


def test_markdown_is_cut_along_sections_and_other_files_along_blank_lines() -> None:
    text = (
        "Intro line\n\n# Title\n\nabout\n\n## Part one\n\n```\n# not a heading\n```\n\n## Two\nx\n"
    )
    symbols = [(c.symbol, c.start_line, c.end_line) for c in chunk("docs/guide.md", text)]
    assert symbols == [
        ("guide", 1, 1),
        ("guide > Title", 3, 5),
        ("guide > Title > Part one", 7, 11),
        ("guide > Title > Two", 13, 14),
    ]
    assert chunk("img.png", "\x00\x01") == []
    big = "\n".join(f"key_{i} = {i}" + ("\n" if i % 40 == 0 else "") for i in range(400))
    pieces = chunk("settings.toml", big)
    assert len(pieces) > 2
    assert all(c.end_line - c.start_line < 150 for c in pieces)


# --- the index ----------------------------------------------------------------------------


def test_the_index_of_persais_itself_answers_questions_about_it(database: str, sql: Any) -> None:
    async def body(pool: AsyncConnectionPool) -> tuple[IndexReport, list[search.Hit]]:
        report = await Indexer(pool).index("persais", OWN, await OWN.head())
        async with pool.connection() as conn:
            hits = await search.search(
                conn, "persais", "How is the GitHub webhook signature verified?"
            )
        return report, hits

    report, hits = with_pool(database, body)
    assert report.files > 150
    assert report.read == report.files
    assert report.chunks > 1000
    assert report.embedded == 0  # no embeddings configured: full text alone
    assert "app/web/signature.py" in [h.path for h in hits]
    # Each chunk knows where it is and what it was read at.
    rows = sql(
        "SELECT path, start_line, end_line, kind, commit, length(content_hash)"
        " FROM memory_chunks WHERE symbol = 'Indexer.index'"
    )
    assert rows == [(rows[0][0], rows[0][1], rows[0][2], "method", report.commit, 64)]
    assert sql("SELECT status, commit FROM memory_repositories") == [("ready", report.commit)]
    assert sql("SELECT count(*) FROM memory_vectors") == [(0,)]


def test_a_cancelled_first_index_lets_its_thread_go_at_once(database: str) -> None:
    """A stopping process cancels the index job; the chunking thread (which no cancel can
    reach) ends at its next file, so it does not hold the process's exit for seconds."""
    import threading

    async def body(pool: AsyncConnectionPool) -> float:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(thread_name_prefix="index-test"))
        job = asyncio.create_task(Indexer(pool).index("persais", OWN, await OWN.head()))

        def chunking() -> list[threading.Thread]:  # the default executor's threads
            return [t for t in threading.enumerate() if t.name.startswith("index-test")]

        while not chunking():  # noqa: ASYNC110 (a thread starting sets no asyncio event)
            await asyncio.sleep(0.005)
        job.cancel()
        started = loop.time()
        await asyncio.gather(job, return_exceptions=True)
        # What asyncio.run does at a process's exit: wait for the executor's work to end.
        await asyncio.wait_for(loop.shutdown_default_executor(), 30)
        return loop.time() - started

    seconds = with_pool(database, body)
    assert seconds < 1.0, f"the chunking thread ran on for {seconds:.1f} s after the cancel"


def test_reindexing_after_a_push_reads_only_what_changed_and_embeds_only_new_chunks(
    tmp_path: Path, database: str, sql: Any
) -> None:
    repo = clone_of_persais(tmp_path)
    source = GitRepository(repo / ".git")
    with scripted_llm([]) as (api, llm):
        embedder = Embedder(api, "k", "hashed-words")

        async def body(pool: AsyncConnectionPool) -> tuple[IndexReport, IndexReport, IndexReport]:
            indexer = Indexer(pool, embedder)
            first = await indexer.index("persais", source, await source.head())
            same = await indexer.index("persais", source, await source.head())
            audit = repo / "app" / "audit.py"
            audit.write_text(audit.read_text() + "\n\ndef tally() -> int:\n    return 42\n")
            (repo / "app" / "github" / "ping.py").unlink()
            (repo / "app" / "novelty.py").write_text('"""A brand new module."""\n\nX = 1\n')
            git(repo, "add", "-A")
            git(repo, "commit", "-q", "-m", "change one file, delete one, add one")
            moved = await indexer.index("persais", source, await source.head())
            return first, same, moved

        first, same, moved = with_pool(database, body)
    # Vectors are kept by content hash (an unchanged chunk is never embedded again); those
    # of chunks gone (ping.py's) are dropped, and no vector is left without its chunk.
    assert moved.forgotten >= 1
    assert sql("SELECT count(*) FROM memory_vectors") == [
        (first.embedded + moved.embedded - moved.forgotten,)
    ]
    assert sql(
        "SELECT count(*) FROM memory_vectors v WHERE NOT EXISTS"
        " (SELECT 1 FROM memory_chunks c WHERE c.content_hash = v.content_hash)"
    ) == [(0,)]
    assert first.embedded > 1000
    assert first.written == first.chunks
    assert (same.read, same.written, same.embedded) == (0, 0, 0)
    assert (moved.read, moved.removed) == (2, 1)  # audit.py and novelty.py; ping.py gone
    # Only the new function and the new module were embedded; audit.py's `record` was not.
    assert moved.embedded == 2
    assert llm.embedded == first.embedded + 2
    assert llm.embedding_requests
    assert sql("SELECT count(*) FROM memory_files WHERE path = 'app/github/ping.py'") == [(0,)]
    assert sql("SELECT symbol FROM memory_chunks WHERE path = 'app/novelty.py'") == [
        ("app.novelty",)
    ]
    # The HNSW index for the model's dimension exists.
    assert sql("SELECT count(*) FROM pg_indexes WHERE indexname = 'memory_vectors_hnsw_64'") == [
        (1,)
    ]


def test_secrets_are_cut_out_before_anything_is_stored_or_embedded(
    tmp_path: Path, database: str, sql: Any
) -> None:
    token = "ghp_" + "".join(random.choices(string.ascii_letters + string.digits, k=36))
    configured = "".join(random.choices(string.ascii_letters + string.digits, k=24))
    key = ["".join(random.choices(string.ascii_letters, k=64)) for _ in range(3)]
    repo = tmp_path / "leaky"
    git(tmp_path, "init", "-q", str(repo))
    (repo / "deploy.py").write_text(
        f'"""Deploy the widgets."""\n\nTOKEN = "{token}"\n\n\ndef deploy() -> None:\n'
        f'    push("widgets", key="{configured}")\n'
    )
    (repo / "SETUP.md").write_text(
        "# Setup\n\nThe deploy key:\n\n-----BEGIN OPENSSH PRIVATE KEY-----\n"
        + "\n".join(key) + "\n-----END OPENSSH PRIVATE KEY-----\n\n## Rotating the key\n\n"
        "Ask the widgets team.\n"
    )  # fmt: skip
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "leak")
    source = GitRepository(repo / ".git")
    with scripted_llm([]) as (api, llm):
        embedder = Embedder(api, "k", "hashed-words")

        async def body(pool: AsyncConnectionPool) -> IndexReport:
            indexer = Indexer(pool, embedder, secrets=[configured])
            return await indexer.index("leaky", source, await source.head())

        report = with_pool(database, body)
    assert report.redacted == 2
    assert "secrets cut out of 2 files" in report.line()
    stored = "\n".join(c for (c,) in sql("SELECT content FROM memory_chunks"))
    sent = repr(llm.embedding_requests)
    for secret in [token, configured, *key]:
        assert secret not in stored
        assert secret not in sent
    assert 'TOKEN = "[redacted: GitHub token]"' in stored
    assert 'key="[redacted: configured secret]"' in stored
    assert sql("SELECT start_line FROM memory_chunks WHERE symbol LIKE '%> Rotating the key'") == [
        (11,)  # the key's lines are kept (empty), so line numbers still point right
    ]


def test_hybrid_retrieval_fuses_vectors_with_full_text(database: str) -> None:
    with scripted_llm([]) as (api, llm):
        embedder = Embedder(api, "k", "hashed-words")

        async def body(pool: AsyncConnectionPool) -> tuple[list[search.Hit], list[search.Hit]]:
            await Indexer(pool, embedder).index("persais", OWN, await OWN.head())
            question = "Where are the lessons for paths matched with fnmatch patterns?"
            async with pool.connection() as conn:
                hybrid = await search.search(conn, "persais", question, embedder=embedder)
                words = await search.search(conn, "persais", question)
            return hybrid, words

        hybrid, words = with_pool(database, body)
    assert llm.embedded > 1000  # the chunks, and the question
    assert "app/memory/lessons.py" in [h.path for h in hybrid]
    assert "app/memory/lessons.py" in [h.path for h in words]
    assert any(h.similarity is not None for h in hybrid)  # vectors took part
    assert all(h.similarity is None for h in words)


def test_embeddings_that_fail_leave_full_text_working(database: str, sql: Any) -> None:
    with scripted_llm([], embedding_failures=100) as (api, _):
        embedder = Embedder(api, "k", "hashed-words", attempts=2)

        async def body(pool: AsyncConnectionPool) -> tuple[IndexReport, list[search.Hit]]:
            report = await Indexer(pool, embedder).index("persais", OWN, await OWN.head())
            async with pool.connection() as conn:
                return report, await search.search(conn, "persais", "deploy to Fly machines")

        report, hits = with_pool(database, body)
    assert "embeddings failed" in report.problem
    assert sql("SELECT status FROM memory_repositories") == [("ready",)]
    assert hits


# --- lessons and traces ------------------------------------------------------------------


def test_lessons_are_tied_to_paths() -> None:
    paths, text = lessons.parse("app/deploy/ and `mechanic/validate.py`: never sleep, ever.")
    assert paths == ("app/deploy/", "mechanic/validate.py")
    assert text.startswith("app/deploy/ and")
    assert lessons.parse("keep answers short")[0] == ()
    lesson = lessons.Lesson(1, "t", ("app/deploy/", "*.md"), "command", "ada", None)  # type: ignore[arg-type]
    assert lesson.applies_to(["app/deploy/fly.py"])
    assert lesson.applies_to(["docs/x.md"])
    assert not lesson.applies_to(["app/deployer.py", "app/review/model.py"])
    general = lessons.Lesson(2, "t", (), "command", "ada", None)  # type: ignore[arg-type]
    assert general.applies_to(["anything.py"])
    for reply in ("That's wrong because the lock is held", "false positive", "Not a bug: it's"
                  " intended", "I disagree, this is by design"):  # fmt: skip
        assert lessons.disputes(reply), reply
    for reply in ("Thanks, fixed!", "Good catch", "wrong file? no, right file"):
        assert not lessons.disputes(reply), reply


def trace(job: str, request: str, outcome: str, **extra: Any) -> Trace:
    values: dict[str, Any] = {
        "job_id": job, "request": request, "plan": {"kind": "agent", "name": job,
        "command": job, "description": request, "behaviour": []}, "files": (),
        "diff_summary": "", "outcome": outcome, "rounds": 0, "problems": "",
        "deployed": False, "rolled_back": False, "rollback_reason": None,
    }  # fmt: skip
    return Trace(**(values | extra))


def test_similar_past_jobs_come_back_as_examples_and_warnings(
    settings: Settings, database: str, sql: Any
) -> None:
    for job in ("echo", "shout", "clock", "weather"):
        sql("INSERT INTO jobs (id, conversation, requested_by, request) VALUES (%s, 'c', 'u', 'r')",
            job)  # fmt: skip

    async def body(pool: AsyncConnectionPool) -> Any:
        memory = Memory(settings, pool)
        echo = trace("echo", "Create an agent Echo that repeats my messages", "opened",
                     files=("dynamic/agents/echo/agent.py",))  # fmt: skip
        await memory.job_finished(echo)
        shout = trace("shout", "Create an agent Shout that repeats messages in capitals",
                      "failed", problems="ruff: E999")  # fmt: skip
        await memory.job_finished(shout)
        await memory.job_finished(trace("clock", "Create a tool Clock that tells the time",
                                        "opened"))  # fmt: skip
        await memory.job_finished(trace("weather", "Create an agent Weather that repeats "
                                        "forecasts", "opened"))  # fmt: skip
        await memory.job_ended_badly("weather", how="rollback", by="cli:ada",
                                     reason="it called a paid API")  # fmt: skip
        await memory.job_deployed("echo")
        await memory.teach("dynamic/agents/ agents never block the event loop", by="cli:ada")
        await memory.teach("app/review/ keep review summaries short", by="cli:ada")
        return await memory.guidance("Create an agent Parrot that repeats my messages",
                                     ["dynamic/agents/parrot/agent.py"])  # fmt: skip

    guidance = with_pool(database, body)
    assert len(guidance.examples) == 1
    assert "Echo" in guidance.examples[0]
    assert "deployed" in guidance.examples[0]
    warnings = "\n".join(guidance.warnings)
    assert "Shout" in warnings
    assert "ruff: E999" in warnings
    assert "Weather" in warnings
    assert "rolled back (it called a paid API)" in warnings
    assert "Clock" not in warnings + "".join(guidance.examples)  # not similar enough
    lessons_text = "\n".join(guidance.lessons)
    assert "never block the event loop" in lessons_text
    assert "review summaries" not in lessons_text  # about other paths
    # The rollback's reason became a lesson of its own, for the job's files.
    assert sql("SELECT source, subject FROM lessons WHERE source = 'rollback'") == [
        ("rollback", "job:weather")
    ]


def test_job_traces_store_what_a_prompt_needs(database: str, sql: Any) -> None:
    sql("INSERT INTO jobs (id, conversation, requested_by, request) VALUES ('j1', 'c', 'u', 'r')")

    async def body(pool: AsyncConnectionPool) -> Trace | None:
        async with pool.connection() as conn:
            await traces.record(conn, trace("j1", "Make Echo", "opened", rounds=2,
                                            diff_summary="3 files changed"), "persais")  # fmt: skip
            await traces.rolled_back(conn, "j1", "broke /help")
            return await traces.get(conn, "j1")

    stored = with_pool(database, body)
    assert stored is not None
    assert stored.rolled_back
    assert not stored.went_well
    text = stored.text()
    assert "Request: Make Echo" in text
    assert "3 files changed" in text
    assert "after 2 repair round(s); rolled back (broke /help)" in text


# --- /ask, /lesson, /lessons in the chat ---------------------------------------------------


def test_ask_lesson_and_lessons_in_the_chat_on_the_embedded_default(
    tmp_path: Path, settings: Settings, database: str, sql: Any
) -> None:
    # Words found nowhere (written here, they would be in the index of this very file).
    nonsense = " ".join("".join(random.choices(string.ascii_lowercase, k=12)) for _ in range(3))
    other = tmp_path / "widgets"
    git(tmp_path, "init", "-q", str(other))
    (other / "spin.py").write_text('def spin() -> int:\n    """Spin the widget."""\n    return 1\n')
    git(other, "add", "-A")
    git(other, "commit", "-q", "-m", "spin")

    async def body() -> dict[str, str]:
        async with conversations(settings, database) as convo:
            source = GitRepository(other / ".git")
            await convo.memory.indexer.index("octo/widgets", source, await source.head())
            said = {}
            said["other"] = (await say(convo, "/ask octo/widgets What does spin do?"))[0].text
            # No queue in this process: the first /ask builds the index itself.
            said["ask"] = (
                await say(convo, "/ask How does the reviewer pin findings to diff lines?")
            )[0].text
            said["unknown"] = (await say(convo, f"/ask {nonsense}"))[0].text
            said["lesson"] = (
                await say(convo, "/lesson app/review/ keep summaries to two sentences")
            )[0].text
            said["list"] = (await say(convo, "/lessons"))[0].text
            said["refused"] = (await say(convo, "/lessons retire 1"))[0].text
            said["retired"] = (await say(convo, "/lessons retire 1", admin=True))[0].text
            said["empty"] = (await say(convo, "/lessons"))[0].text
            return said

    said = asyncio.run(body())
    assert said["other"].startswith("From the index of octo/widgets at ")
    assert "spin.py:1-3 — function spin\n    Spin the widget." in said["other"]
    ask = said["ask"]
    assert ask.startswith("From the index of persais at "), ask
    assert "app/review/compose.py:" in ask  # path:start-end of the places that answer it
    assert said["unknown"].startswith("I don't know: nothing in the index of persais")
    assert said["lesson"].startswith("Lesson #1 noted for app/review/")
    assert "#1 [app/review/] app/review/ keep summaries to two sentences" in said["list"]
    assert said["refused"] == "Only an admin can retire a lesson."
    assert said["retired"].startswith("Lesson #1 retired")
    assert said["empty"].startswith("No lessons yet")
    actions = [a for (a,) in sql("SELECT action FROM audit_log WHERE action LIKE 'memory.%'"
                                 " ORDER BY id")]  # fmt: skip
    assert actions == ["memory.asked", "memory.indexed", "memory.asked", "memory.asked",
                       "memory.lesson", "memory.lesson_retired"]  # fmt: skip


def test_ask_with_a_model_checks_its_references(settings: Settings, database: str) -> None:
    good = "Findings are pinned in `app/review/compose.py:{line}`."
    invented = "It happens in app/nowhere.py:12."
    with scripted_llm([invented, good]) as (api, llm):
        configured = settings.model_copy(update={"llm_api_base": api})
        configured = configured.model_copy(
            update={"llm_api_key": __import__("pydantic").SecretStr("k")}
        )

        async def body(pool: AsyncConnectionPool) -> tuple[str, str, str]:
            memory = Memory(configured, pool)
            await memory.indexer.index("persais", OWN, await OWN.head())
            first = await memory.ask("How does the reviewer pin findings to diff lines?")
            async with pool.connection() as conn:
                hits = await search.search(
                    conn, "persais", "How does the reviewer pin findings to diff lines?"
                )
            line = next(h.start_line for h in hits if h.path == "app/review/compose.py")
            llm.replies[0] = good.format(line=line)
            second = await memory.ask("How does the reviewer pin findings to diff lines?")
            return first.text, second.text, str(line)

        invented_answer, written, line = with_pool(database, body)
    # An answer naming a place it was not shown is not passed on: the places are.
    assert invented_answer.startswith("From the index of persais")
    assert written.startswith(f"Findings are pinned in `app/review/compose.py:{line}`.")
    assert "Sources (persais at " in written
    system = llm.requests[0]["messages"][0]["content"]
    assert "I don't know" in system
    assert "UNTRUSTED-" in llm.requests[0]["messages"][1]["content"]
