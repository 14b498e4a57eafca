"""Retrieval over the repository index: full text (rare words weigh more, as in BM25), and,
with embeddings, the nearest vectors; the two lists fused by rank (reciprocal rank fusion).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, TypeVar

from psycopg import AsyncConnection, sql

from app.memory import embeddings
from app.memory.embeddings import Embedder
from app.memory.words import CONFIG, searchable

CANDIDATES = 40  # from each list, before fusion
RRF_K = 60  # the usual constant of reciprocal rank fusion
K = TypeVar("K")
PER_FILE = 2  # at most this many chunks of one file in an answer: five places, not one file
TESTS_WEIGHT = 0.6  # a test mentions what it tests; the code itself answers "how" first


@dataclass(frozen=True)
class Hit:
    id: int
    path: str
    start_line: int
    end_line: int
    kind: str
    symbol: str
    content: str
    commit: str
    score: float  # the fused score (higher is better)
    matched: int = 0  # how many of the question's words the chunk has
    terms: int = 0  # how many words the question has (stop words aside)
    similarity: float | None = None  # cosine similarity, when vectors took part

    @property
    def where(self) -> str:
        if self.start_line == self.end_line:
            return f"{self.path}:{self.start_line}"
        return f"{self.path}:{self.start_line}-{self.end_line}"


_COLUMNS = "c.id, c.path, c.start_line, c.end_line, c.kind, c.symbol, c.content, c.commit"

# Each known word of the question, with its inverse document frequency over the repository;
# a chunk's score is the sum over the words it has of idf * ts_rank (weights: path and
# symbol above content; normalised by length).
_FULL_TEXT = f"""
WITH stats AS (
    SELECT greatest(chunks, 1)::float8 AS n FROM memory_repositories WHERE repository = %(repo)s
), terms AS (
    SELECT quote_literal(t.word)::tsquery AS q,
           ln(1 + (s.n - m.docs + 0.5) / (m.docs + 0.5)) AS idf
    FROM unnest(tsvector_to_array(to_tsvector(%(config)s::regconfig, %(question)s))) AS t(word)
    JOIN memory_terms m ON m.repository = %(repo)s AND m.lexeme = t.word
    CROSS JOIN stats s
), wanted AS (
    SELECT string_agg(q::text, ' | ')::tsquery AS q, count(*) AS n FROM terms
)
SELECT {_COLUMNS},
       (SELECT sum(t.idf * ts_rank(c.search, t.q, 1)) FROM terms t) AS score,
       (SELECT count(*) FROM terms t WHERE c.search @@ t.q) AS matched,
       (SELECT count(*) FROM unnest(tsvector_to_array(
            to_tsvector(%(config)s::regconfig, %(question)s)))) AS terms
FROM memory_chunks c CROSS JOIN wanted w
WHERE c.repository = %(repo)s AND c.search @@ w.q
ORDER BY score DESC, c.id
LIMIT %(limit)s
"""  # noqa: S608 - the only interpolation is the fixed column list above


async def full_text(
    conn: AsyncConnection[Any], repository: str, question: str, limit: int = CANDIDATES
) -> list[Hit]:
    cur = await conn.execute(
        _FULL_TEXT,
        {"repo": repository, "question": searchable(question), "config": CONFIG,
         "limit": limit},
    )  # fmt: skip
    hits = [
        _hit(row, float(row[8] or 0) * _weight(row[1]), matched=int(row[9]), terms=int(row[10]))
        for row in await cur.fetchall()
    ]  # fmt: skip
    return sorted(hits, key=lambda h: -h.score)


def _hit(row: tuple[Any, ...], score: float, **known: Any) -> Hit:
    id_, path, start, end, kind, symbol, content, commit = row[:8]
    return Hit(int(id_), str(path), int(start), int(end), str(kind), str(symbol), str(content),
               str(commit), score, **known)  # fmt: skip


def _weight(path: str) -> float:
    return TESTS_WEIGHT if path.startswith("tests/") or "/tests/" in path else 1.0


_NEAREST = """
WITH near AS (
    SELECT content_hash, {cast} <=> %(v)s::vector AS distance
    FROM memory_vectors WHERE dims = %(dims)s AND model = %(model)s
    ORDER BY {cast} <=> %(v)s::vector LIMIT %(over)s
)
SELECT DISTINCT ON (c.id) {columns}, 1 - near.distance
FROM near JOIN memory_chunks c ON c.content_hash = near.content_hash
WHERE c.repository = %(repo)s
"""


async def nearest(
    conn: AsyncConnection[Any], repository: str, vector: list[float], model: str,
    limit: int = CANDIDATES,
) -> list[Hit]:  # fmt: skip
    """The chunks whose embeddings are closest to `vector` (cosine), through the HNSW index."""
    dims = len(vector)
    cast = sql.SQL("embedding::vector({})").format(sql.Literal(dims))
    query = sql.SQL(_NEAREST).format(cast=cast, columns=sql.SQL(_COLUMNS))
    async with conn.transaction():  # the wider search beam for this query only
        await conn.execute("SET LOCAL hnsw.ef_search = 100")
        cur = await conn.execute(
            query,
            {"v": embeddings.literal(vector), "dims": dims, "model": model, "repo": repository,
             "over": limit * 3},
        )  # fmt: skip
        rows = await cur.fetchall()
    hits = [_hit(row, float(row[8]), similarity=float(row[8])) for row in rows]
    hits.sort(key=lambda h: -h.score)
    return hits[:limit]


def reciprocal_ranks(*rankings: list[K]) -> dict[K, float]:
    """Reciprocal rank fusion: each list gives an item 1 / (RRF_K + rank); what several
    lists rank well rises. Items in the order of their fused score."""
    scores: dict[K, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, 1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (RRF_K + rank)
    return dict(sorted(scores.items(), key=lambda pair: -pair[1]))


def fuse(*rankings: list[Hit]) -> list[Hit]:
    """The hits of several rankings fused by rank; a fused hit keeps what each side knew
    (matched words, similarity)."""
    merged: dict[int, Hit] = {}
    for hit in (h for ranking in rankings for h in ranking):
        seen = merged.get(hit.id)
        merged[hit.id] = hit if seen is None else replace(
            seen, matched=max(seen.matched, hit.matched), terms=max(seen.terms, hit.terms),
            similarity=seen.similarity if seen.similarity is not None else hit.similarity,
        )  # fmt: skip
    fused = reciprocal_ranks(*([h.id for h in ranking] for ranking in rankings))
    return [replace(merged[i], score=score) for i, score in fused.items()]


async def search(
    conn: AsyncConnection[Any], repository: str, question: str, *, limit: int = 5,
    embedder: Embedder | None = None, vector: list[float] | None = None,
) -> list[Hit]:  # fmt: skip
    """The chunks of `repository` that best answer `question`: full text alone, or fused
    with the nearest vectors when an embedder (or the question's vector) is given."""
    words = await full_text(conn, repository, question)
    if vector is None and embedder is not None:
        vector = (await embedder.embed([question]))[0]
    if vector is None or embedder is None:
        return diverse(words, limit)
    near = await nearest(conn, repository, vector, embedder.model)
    return diverse(fuse(words, near), limit)


def diverse(hits: list[Hit], limit: int, per_file: int = PER_FILE) -> list[Hit]:
    """The best `limit` hits with at most `per_file` from any one file."""
    taken: list[Hit] = []
    count: dict[str, int] = {}
    for hit in hits:
        if count.get(hit.path, 0) < per_file:
            taken.append(hit)
            count[hit.path] = count.get(hit.path, 0) + 1
            if len(taken) == limit:
                break
    return taken
