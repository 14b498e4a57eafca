"""Memory benchmark: index Persais's own repository, then answer a labelled set of
questions about it (`bench/memory_questions.toml`) and time retrieval at 10,000 chunks.

    .venv/bin/python bench/memory.py [--repeat 3] [--embeddings]

1. Index this checkout's HEAD on a fresh embedded Postgres: time, files, chunks, chunks/s;
   then the same commit again (nothing changed: nothing read) and a commit touching one
   file (only it read again).
2. Recall@5: a question is answered when any of its labelled files is among the top 5
   chunks' files (target ≥ 0.8 in full-text mode). Misses are listed. The question file
   itself is in the index (it is in the repository) and would match every question word
   for word: its chunks are skipped when the top 5 are counted.
3. Latency at 10,000 chunks: other repositories are added to the same database until the
   index holds ≥ 10,000 chunks (the Python sources of installed libraries, each committed to
   a scratch git repository and indexed like any other), then every question is asked
   `--repeat` times against Persais's repository: p50 / p95 (target p95 < 100 ms).

With `--embeddings` the scripted model server's hashed bag-of-words embeddings take part
(hybrid retrieval); it checks the plumbing and its cost, not the quality of a real model.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from psycopg_pool import AsyncConnectionPool  # noqa: E402

from app.memory.embeddings import Embedder  # noqa: E402
from app.memory.index import GitRepository, Indexer  # noqa: E402
from app.memory.search import search  # noqa: E402
from tests.support.pools import open_pool  # noqa: E402
from tests.support.postgres import TestPostgres  # noqa: E402
from tests.support.scripted_llm import scripted_llm  # noqa: E402

QUESTIONS = ROOT / "bench" / "memory_questions.toml"
LABELS = "bench/memory_questions.toml"  # holds every question word for word: not counted
TARGET_RECALL = 0.8
TARGET_P95_MS = 100.0
SCALE_CHUNKS = 10_000
# Installed libraries whose sources make the extra repositories (in this order).
LIBRARIES = ("aiogram", "starlette", "httpx", "psycopg", "pydantic", "procrastinate",
             "langgraph", "jinja2", "yaml", "anyio", "uvicorn", "pydantic_settings")  # fmt: skip


def load_questions() -> list[tuple[str, list[str]]]:
    data = tomllib.loads(QUESTIONS.read_text())
    return [(q["q"], list(q["files"])) for q in data["question"]]


def git(*args: str, cwd: Path) -> str:
    env = {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@localhost",
           "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@localhost",
           "PATH": "/usr/bin:/bin", "HOME": str(cwd)}  # fmt: skip
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
    ).stdout


def library_repo(name: str, scratch: Path) -> Path | None:
    """A git repository holding an installed library's sources (one commit)."""
    module = __import__(name)
    source = Path(module.__file__ or "").parent
    if not source.is_dir():
        return None
    repo = scratch / name
    shutil.copytree(source, repo / name, ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    git("init", "-q", cwd=repo)
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", f"{name} sources", cwd=repo)
    return repo


async def recall(
    pool: AsyncConnectionPool, questions: list[tuple[str, list[str]]], embedder: Embedder | None
) -> tuple[float, list[str], list[float]]:
    hits = 0
    misses: list[str] = []
    times: list[float] = []
    async with pool.connection() as conn:
        for question, files in questions:
            t = time.perf_counter()
            found = await search(conn, "persais", question, limit=7, embedder=embedder)
            times.append(time.perf_counter() - t)
            paths = [h.path for h in found if h.path != LABELS][:5]
            if set(paths) & set(files):
                hits += 1
            else:
                misses.append(f"  {question}\n    want {files}\n    got  {paths}")
    return hits / len(questions), misses, times


async def main(args: argparse.Namespace) -> int:
    questions = load_questions()
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        pg = TestPostgres(scratch / "pg")
        try:
            with scripted_llm([]) as (api, _llm):
                embedder = Embedder(api, "key", "hashed-words") if args.embeddings else None
                async with open_pool(pg.fresh_database()) as pool:
                    failed = await _run(pool, questions, embedder, scratch, args)
        finally:
            pg.stop()
    return 1 if failed else 0


async def _run(
    pool: AsyncConnectionPool, questions: list[tuple[str, list[str]]],
    embedder: Embedder | None, scratch: Path, args: argparse.Namespace,
) -> bool:  # fmt: skip
    mode = "hybrid (scripted embeddings)" if embedder else "full text"
    print(f"Memory benchmark, {mode}; {len(questions)} questions\n")
    indexer = Indexer(pool, embedder)
    own = GitRepository(ROOT / ".git")
    head = await own.head()
    first = await indexer.index("persais", own, head)
    print(f"index, first: {first.line()}")
    rate = first.chunks / first.seconds
    print(f"  {rate:.0f} chunks/s, {first.files / first.seconds:.0f} files/s")
    again = await indexer.index("persais", own, head)
    print(f"index, same commit again: {again.read} files read, {again.seconds * 1000:.0f} ms")
    edited = scratch / "edited"
    git("clone", "-q", str(ROOT), str(edited), cwd=scratch)
    readme = edited / "README.md"
    readme.write_text(readme.read_text() + "\nOne more line for the benchmark.\n")
    git("commit", "-q", "-am", "bench: one file changed", cwd=edited)
    moved = GitRepository(edited / ".git")
    one = await indexer.index("persais", moved, await moved.head())
    print(f"index, one file changed: {one.read} read, {one.written} chunks written,"
          f" {one.embedded} embedded, {one.seconds * 1000:.0f} ms")  # fmt: skip

    score, misses, _ = await recall(pool, questions, embedder)
    print(f"\nrecall@5: {score:.2f} ({round(score * len(questions))}/{len(questions)})"
          f"  target ≥ {TARGET_RECALL}")  # fmt: skip
    if misses and args.verbose:
        print("misses:\n" + "\n".join(misses))

    total = one.chunks
    for name in LIBRARIES:
        if total >= SCALE_CHUNKS:
            break
        repo = library_repo(name, scratch / "libs")
        if repo is None:
            continue
        source = GitRepository(repo / ".git")
        report = await indexer.index(f"lib/{name}", source, await source.head())
        total += report.chunks
    print(f"\nindex grown to {total} chunks (Persais + libraries)")
    times: list[float] = []
    for _ in range(args.repeat):
        _, _, run = await recall(pool, questions, embedder)
        times += run
    ms = sorted(t * 1000 for t in times)
    p50, p95 = statistics.median(ms), ms[int(len(ms) * 0.95) - 1]
    print(f"retrieval over {len(ms)} questions: p50 {p50:.1f} ms, p95 {p95:.1f} ms,"
          f" max {ms[-1]:.1f} ms  target p95 < {TARGET_P95_MS:.0f} ms")  # fmt: skip
    score_big, _, _ = await recall(pool, questions, embedder)
    print(f"recall@5 with the libraries beside it: {score_big:.2f}")
    missed = []
    if score < TARGET_RECALL:
        missed.append("recall@5")
    if p95 >= TARGET_P95_MS:
        missed.append("p95 latency")
    if total < SCALE_CHUNKS:
        missed.append(f"scale ({total} < {SCALE_CHUNKS} chunks)")
    print("\nmissed targets: " + (", ".join(missed) if missed else "none"))
    return bool(missed)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--embeddings", action="store_true")
    parser.add_argument("--verbose", "-v", action="store_true", help="list the misses")
    sys.exit(asyncio.run(main(parser.parse_args())))
