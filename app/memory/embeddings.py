"""Embeddings from an OpenAI-compatible `/v1/embeddings` endpoint (`EMBEDDINGS_MODEL`), and
their place in pgvector: one row per (model, content hash), one HNSW index per dimension."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import httpx
from psycopg import AsyncConnection, sql

log = logging.getLogger(__name__)
BATCH = 64
HNSW_MAX_DIMS = 2000  # pgvector's limit for an HNSW index on `vector`


class EmbeddingError(RuntimeError):
    pass


@dataclass(frozen=True)
class Embedder:
    api_base: str  # ends in /v1 (or the provider's equivalent)
    api_key: str
    model: str
    timeout: float = 60.0
    attempts: int = 3

    async def embed(self, texts: list[str]) -> list[list[float]]:
        """One vector per text, in order."""
        vectors: list[list[float]] = []
        async with httpx.AsyncClient(timeout=self.timeout) as client:
            for start in range(0, len(texts), BATCH):
                vectors += await self._batch(client, texts[start : start + BATCH])
        return vectors

    async def _batch(self, client: httpx.AsyncClient, texts: list[str]) -> list[list[float]]:
        body = {"model": self.model, "input": [t[:24_000] or " " for t in texts],
                "encoding_format": "float"}  # fmt: skip
        headers = {"Authorization": f"Bearer {self.api_key}"}
        url = f"{self.api_base.rstrip('/')}/embeddings"
        problem = ""
        for attempt in range(self.attempts):
            try:
                response = await client.post(url, json=body, headers=headers)
            except httpx.HTTPError as exc:
                problem = f"the embeddings endpoint did not answer: {type(exc).__name__}"
            else:
                if response.status_code == 200:
                    return _vectors(response.json(), len(texts))
                problem = f"the embeddings endpoint answered {response.status_code}"
                if response.status_code < 500 and response.status_code != 429:
                    raise EmbeddingError(f"{problem}: {response.text[:200]}")
            await asyncio.sleep(0.5 * 2**attempt)
        raise EmbeddingError(problem)


def _vectors(data: Any, expected: int) -> list[list[float]]:
    try:
        items = sorted(data["data"], key=lambda item: int(item["index"]))
        vectors = [[float(x) for x in item["embedding"]] for item in items]
    except (KeyError, TypeError, ValueError):
        raise EmbeddingError("the embeddings endpoint's answer has no vectors") from None
    if len(vectors) != expected or not vectors or any(len(v) != len(vectors[0]) for v in vectors):
        raise EmbeddingError(f"expected {expected} vectors of one size from the endpoint")
    return vectors


def literal(vector: list[float]) -> str:
    """pgvector's text form."""
    return "[" + ",".join(f"{x:.7g}" for x in vector) + "]"


async def missing(conn: AsyncConnection[Any], model: str, hashes: list[str]) -> set[str]:
    """The content hashes that have no vector of `model` yet."""
    cur = await conn.execute(
        "SELECT h FROM unnest(%s::text[]) AS h WHERE NOT EXISTS"
        " (SELECT 1 FROM memory_vectors v WHERE v.model = %s AND v.content_hash = h)",
        (hashes, model),
    )
    return {row[0] for row in await cur.fetchall()}


async def store(
    conn: AsyncConnection[Any], model: str, pairs: list[tuple[str, list[float]]]
) -> None:
    if not pairs:
        return
    async with conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO memory_vectors (model, content_hash, dims, embedding)"
            " VALUES (%s, %s, %s, %s::vector) ON CONFLICT DO NOTHING",
            [(model, h, len(v), literal(v)) for h, v in pairs],
        )
    await ensure_index(conn, len(pairs[0][1]))


async def forget_unused(conn: AsyncConnection[Any]) -> int:
    """Drop the vectors no chunk and no job trace has the text of any more (a removed file's,
    an edited function's old version): they would crowd the nearest-neighbour search. A
    vector dropped while another index run is about to reuse it is made again by that run's
    next pass (it is missing then), and full text finds the chunk meanwhile."""
    cur = await conn.execute(
        "DELETE FROM memory_vectors v WHERE NOT EXISTS"
        " (SELECT 1 FROM memory_chunks c WHERE c.content_hash = v.content_hash)"
        " AND NOT EXISTS (SELECT 1 FROM job_traces t WHERE t.content_hash = v.content_hash)"
    )
    return cur.rowcount


def index_name(dims: int) -> str:
    return f"memory_vectors_hnsw_{dims}"


async def ensure_index(conn: AsyncConnection[Any], dims: int) -> bool:
    """The HNSW index for vectors of `dims` (cosine), made once; False when pgvector cannot
    index that many dimensions (the search then scans, exact and slower)."""
    if dims > HNSW_MAX_DIMS:
        log.warning("%d-dimensional embeddings are searched without an index (max %d)",
                    dims, HNSW_MAX_DIMS)  # fmt: skip
        return False
    cur = await conn.execute("SELECT to_regclass(%s)", (index_name(dims),))
    row = await cur.fetchone()
    if row is not None and row[0] is not None:
        return True
    statement = sql.SQL(
        "CREATE INDEX IF NOT EXISTS {} ON memory_vectors USING hnsw"
        " ((embedding::vector({})) vector_cosine_ops) WHERE dims = {}"
    ).format(sql.Identifier(index_name(dims)), sql.Literal(dims), sql.Literal(dims))
    async with conn.transaction():  # two processes making it at once: one waits for the other
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('memory_vectors_hnsw'))")
        await conn.execute(statement)
    return True
