"""The repository index: a commit of a git repository, chunked, in Postgres.

Secrets are cut out of every file as it is read (`mechanic.redaction`): what is stored, embedded,
searched and quoted is the redacted text, with the same lines.

Incremental: a file whose git blob id is the one indexed before is not read again; a chunk
whose content hash already has a vector is not embedded again (so an edit to one function
re-embeds that function, not its file). One index run per repository at a time (an
advisory lock); the index of a repository always describes one commit.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from app.memory import embeddings
from app.memory.chunking import Chunk, chunk, embedding_text, indexed
from app.memory.embeddings import Embedder
from app.memory.words import CONFIG, searchable
from mechanic import redaction

log = logging.getLogger(__name__)


@dataclass
class IndexReport:
    repository: str
    commit: str
    files: int = 0  # indexed files at the commit
    read: int = 0  # files read (new or changed)
    removed: int = 0
    chunks: int = 0  # chunks of the repository after the run
    written: int = 0  # chunks written by this run
    embedded: int = 0  # chunks sent to the embeddings endpoint
    redacted: int = 0  # files read that held something like a secret (cut out)
    forgotten: int = 0  # vectors no chunk or trace needs any more, dropped
    seconds: float = 0.0
    problem: str = ""  # embeddings failed: full text still works

    def line(self) -> str:
        return (
            f"{self.repository} at {self.commit[:7]}: {self.files} files ({self.read} read,"
            f" {self.removed} removed), {self.chunks} chunks ({self.written} written,"
            f" {self.embedded} embedded) in {self.seconds:.1f} s"
            + (f"; secrets cut out of {self.redacted} files" if self.redacted else "")
            + (f"; {self.problem}" if self.problem else "")
        )


class GitRepository:
    """A commit's files, read straight from git's object store (no checkout)."""

    def __init__(self, git_dir: Path) -> None:
        self.git_dir = git_dir

    async def _run(self, *args: str, stdin: bytes | None = None) -> bytes:
        proc = await asyncio.create_subprocess_exec(
            "git", "--git-dir", str(self.git_dir), *args,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await proc.communicate(stdin)
        if proc.returncode != 0:
            raise RuntimeError(f"git {args[0]}: {err.decode(errors='replace').strip()[-300:]}")
        return out

    async def head(self, ref: str = "HEAD") -> str:
        return (await self._run("rev-parse", "--verify", f"{ref}^{{commit}}")).decode().strip()

    async def files(self, commit: str) -> dict[str, tuple[str, int]]:
        """path -> (blob id, size) of every regular file at `commit`."""
        out = await self._run("ls-tree", "-r", "-l", "-z", "--full-tree", commit)
        found: dict[str, tuple[str, int]] = {}
        for entry in out.split(b"\0"):
            if not entry:
                continue
            meta, _, path = entry.partition(b"\t")
            mode, kind, blob, size = meta.split()
            if kind == b"blob" and mode in (b"100644", b"100755") and size.isdigit():
                found[path.decode(errors="replace")] = (blob.decode(), int(size))
        return found

    async def read(self, blobs: list[str]) -> dict[str, bytes]:
        """The contents of `blobs`, in one `git cat-file --batch`."""
        if not blobs:
            return {}
        out = await self._run("cat-file", "--batch", stdin="\n".join(blobs).encode() + b"\n")
        contents: dict[str, bytes] = {}
        at = 0
        for _ in blobs:
            end = out.index(b"\n", at)
            header = out[at:end].split()
            size = int(header[2])
            contents[header[0].decode()] = out[end + 1 : end + 1 + size]
            at = end + 1 + size + 1
        return contents


class Indexer:
    def __init__(
        self,
        pool: AsyncConnectionPool,
        embedder: Embedder | None = None,
        *,
        secrets: Iterable[str] = (),
    ) -> None:
        self.pool = pool
        self.embedder = embedder
        self.secrets = tuple(secrets)  # configured values, cut out wherever they appear

    async def index(self, repository: str, source: GitRepository, commit: str) -> IndexReport:
        started = time.monotonic()
        report = IndexReport(repository, commit)
        async with self.pool.connection() as lock:
            await lock.execute("SELECT pg_advisory_lock(hashtext(%s))", (f"memory:{repository}",))
            try:
                await self._status(repository, "indexing")
                try:
                    await self._files(repository, source, commit, report)
                except Exception as exc:
                    await self._status(repository, "failed", f"{type(exc).__name__}: {exc}")
                    raise
                if report.read or report.removed:
                    async with self.pool.connection() as conn:
                        report.forgotten = await embeddings.forget_unused(conn)
                if self.embedder is not None:
                    try:
                        report.embedded = await self.embed(repository)
                    except embeddings.EmbeddingError as exc:  # full text still answers
                        report.problem = f"embeddings failed: {exc}"
                        log.warning("indexing %s: %s", repository, report.problem)
            finally:
                await lock.execute(
                    "SELECT pg_advisory_unlock(hashtext(%s))", (f"memory:{repository}",)
                )
        report.seconds = time.monotonic() - started
        log.info("indexed %s", report.line())
        return report

    async def _status(self, repository: str, status: str, problem: str | None = None) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                "INSERT INTO memory_repositories (repository, status, problem) VALUES (%s, %s, %s)"
                " ON CONFLICT (repository) DO UPDATE SET status = EXCLUDED.status,"
                " problem = EXCLUDED.problem",
                (repository, status, problem),
            )

    async def _files(
        self, repository: str, source: GitRepository, commit: str, report: IndexReport
    ) -> None:
        at_commit = {p: blob for p, (blob, size) in (await source.files(commit)).items()
                     if indexed(p, size)}  # fmt: skip
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT path, blob FROM memory_files WHERE repository = %s", (repository,)
            )
            known: dict[str, str] = {row[0]: row[1] for row in await cur.fetchall()}
        changed = sorted(p for p, blob in at_commit.items() if known.get(p) != blob)
        removed = sorted(set(known) - set(at_commit))
        contents = await source.read(sorted({at_commit[p] for p in changed}))
        # Seconds of CPU on a first index (a whole repository): in a thread, so the event
        # loop keeps answering webhooks meanwhile (issue 17, defect 4).
        # A thread cannot be cancelled: a cancelled job (a stopping process) sets `stop`, and
        # the thread ends at its next file instead of holding the process's exit.
        stop = threading.Event()
        try:
            chunks, rows, redacted = await asyncio.to_thread(
                self._chunk, [(path, contents[at_commit[path]]) for path in changed], stop
            )
        except asyncio.CancelledError:
            stop.set()
            raise
        report.redacted += redacted
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute(
                "DELETE FROM memory_files WHERE repository = %s AND path = ANY(%s)",
                (repository, changed + removed),
            )
            async with conn.cursor() as cur:
                await cur.executemany(
                    "INSERT INTO memory_files (repository, path, blob, commit)"
                    " VALUES (%s, %s, %s, %s)",
                    [(repository, p, at_commit[p], commit) for p in changed],
                )
                await cur.executemany(
                    "INSERT INTO memory_chunks (repository, path, start_line, end_line, kind,"
                    " symbol, commit, content_hash, content, search) VALUES"
                    " (%s, %s, %s, %s, %s, %s, %s, %s, %s,"
                    " setweight(to_tsvector(%s, %s), 'A') || setweight(to_tsvector(%s, %s), 'B'))",
                    [(repository, c.path, c.start_line, c.end_line, c.kind, c.symbol, commit,
                      c.content_hash, c.content, CONFIG, title, CONFIG, body)
                     for c, (title, body) in zip(chunks, rows, strict=True)],
                )  # fmt: skip
            if changed or removed or report.files == 0:
                await _count_terms(conn, repository)
            cur = await conn.execute(
                "SELECT count(*) FROM memory_chunks WHERE repository = %s", (repository,)
            )
            row = await cur.fetchone()
            report.chunks = int(row[0]) if row else 0
            await conn.execute(
                "UPDATE memory_repositories SET commit = %s, status = 'ready', problem = NULL,"
                " files = %s, chunks = %s, indexed_at = now() WHERE repository = %s",
                (commit, len(at_commit), report.chunks, repository),
            )
        report.files, report.read, report.removed = len(at_commit), len(changed), len(removed)
        report.written = len(chunks)

    def _chunk(
        self, files: list[tuple[str, bytes]], stop: threading.Event
    ) -> tuple[list[Chunk], list[tuple[str, str]], int]:
        """The files' chunks, secrets cut out first; each chunk's searchable title and body;
        how many files held a secret. Returns early (nobody reads it then) once `stop` is set."""
        chunks: list[Chunk] = []
        rows: list[tuple[str, str]] = []
        redacted = 0
        for path, content in files:
            if stop.is_set():
                break
            text = content.decode("utf-8", errors="replace")
            clean = redaction.redact(text, self.secrets)  # before it is stored or sent
            redacted += clean != text
            pieces = chunk(path, clean)
            chunks += pieces
            rows += [(searchable(f"{c.path} {c.symbol}"), searchable(c.content)) for c in pieces]
        return chunks, rows, redacted

    async def embed(self, repository: str) -> int:
        """Embed the repository's chunks that have no vector yet; how many were sent."""
        assert self.embedder is not None
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT DISTINCT ON (content_hash) content_hash, path, symbol, content"
                " FROM memory_chunks WHERE repository = %s", (repository,),
            )  # fmt: skip
            rows = await cur.fetchall()
            todo = await embeddings.missing(conn, self.embedder.model, [r[0] for r in rows])
        pending = [r for r in rows if r[0] in todo]
        for start in range(0, len(pending), embeddings.BATCH * 4):
            batch = pending[start : start + embeddings.BATCH * 4]
            texts = [embedding_text(path, symbol, content) for _, path, symbol, content in batch]
            vectors = await self.embedder.embed(texts)
            async with self.pool.connection() as conn:
                await embeddings.store(
                    conn, self.embedder.model, [(r[0], v) for r, v in zip(batch, vectors,
                                                                           strict=True)]
                )  # fmt: skip
        return len(pending)


async def _count_terms(conn: AsyncConnection[Any], repository: str) -> None:
    """Recount in how many chunks each word occurs (rare words weigh more in the ranking)."""
    await conn.execute("DELETE FROM memory_terms WHERE repository = %s", (repository,))
    await conn.execute(
        "INSERT INTO memory_terms (repository, lexeme, docs) SELECT %s, word, ndoc FROM"
        " ts_stat(format('SELECT search FROM memory_chunks WHERE repository = %%L', %s::text))",
        (repository, repository),
    )
