"""Lessons: what people taught Persais, tied to the paths they are about.

A lesson comes from `/lesson <text>`, from a reply disputing one of the reviewer's comments,
or from a Mechanic job that was aborted or rolled back with a reason. The lessons for the
paths at hand go into the review's and the Mechanic's prompts. A lesson is never deleted;
an admin retires it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from fnmatch import fnmatchcase
from typing import Any

from psycopg import AsyncConnection

MAX_TEXT = 1000
MAX_IN_PROMPT = 10

# Something that names a place in a repository: `app/deploy/`, `dynamic/agents/*`,
# `README.md`, `mechanic/validate.py`.
_PATH = re.compile(
    r"^`?((?:[\w.*?\[\]-]+/)+[\w.*?\[\]-]*|[\w*?-]+\.(?:py|md|toml|ya?ml|sql|j2|txt|cfg|ini|sh|json))`?$"
)
_DISPUTE = re.compile(
    r"\b(?:that'?s|this is|it'?s|you'?re|this was|that was)\s+(?:just\s+|simply\s+)?"
    r"(?:wrong|incorrect|not (?:right|true|correct|a (?:bug|problem|real issue)|an issue))"
    r"|\bfalse (?:positive|alarm)\b|\bnot a (?:bug|problem)\b|\bI disagree\b|\bdisagree\b"
    r"|\bwrong because\b|\bincorrect because\b|\bthis is intended\b|\bthis is intentional\b"
    r"|\bworks as intended\b|\bby design\b",
    re.I,
)


@dataclass(frozen=True)
class Lesson:
    id: int
    text: str
    paths: tuple[str, ...]
    source: str  # command | dispute | abort | rollback
    created_by: str
    created_at: datetime

    def applies_to(self, paths: Iterable[str]) -> bool:
        """No paths: everywhere. A pattern matches a path (fnmatch), or is a folder of it."""
        if not self.paths:
            return True
        return any(_matches(pattern, path) for pattern in self.paths for path in paths)

    def for_prompt(self) -> str:
        where = ", ".join(self.paths) if self.paths else "everywhere"
        return f"[{where}] {self.text}"

    def line(self) -> str:
        """As /lessons lists it."""
        return f"#{self.id} {self.for_prompt()} ({self.source}, {self.created_by})"


def _matches(pattern: str, path: str) -> bool:
    if fnmatchcase(path, pattern):
        return True
    folder = pattern.rstrip("*").rstrip("/")  # "app/deploy/**", "app/deploy/": the folder
    return not any(c in folder for c in "*?[") and path.startswith(folder + "/")


def parse(text: str) -> tuple[tuple[str, ...], str]:
    """(paths, text) of `/lesson`: the words that name places are its paths
    (`/lesson app/deploy/: never block the event loop`); none: everywhere."""
    paths: list[str] = []
    for word in text.split():
        candidate = word.rstrip(":,;.)").lstrip("(")
        if _PATH.match(candidate) and not candidate.startswith(("http", "//")):
            paths.append(candidate.strip("`"))
    return tuple(dict.fromkeys(paths)), " ".join(text.split())[:MAX_TEXT]


def disputes(reply: str) -> bool:
    """Whether a reply to a review comment says the comment is wrong."""
    return _DISPUTE.search(reply) is not None


async def add(
    conn: AsyncConnection[Any], repository: str, text: str, paths: Iterable[str], *,
    source: str, by: str, subject: str | None = None,
) -> Lesson | None:  # fmt: skip
    """Store a lesson; None when one from the same subject (a comment, a job) exists."""
    cur = await conn.execute(
        "INSERT INTO lessons (repository, text, paths, source, subject, created_by)"
        " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"
        " RETURNING id, text, paths, source, created_by, created_at",
        (repository, text[:MAX_TEXT], list(paths), source, subject, by),
    )
    row = await cur.fetchone()
    return _lesson(row) if row else None


async def active(conn: AsyncConnection[Any], repository: str) -> list[Lesson]:
    cur = await conn.execute(
        "SELECT id, text, paths, source, created_by, created_at FROM lessons"
        " WHERE repository = %s AND retired_at IS NULL ORDER BY id",
        (repository,),
    )
    return [_lesson(row) for row in await cur.fetchall()]


async def for_paths(
    conn: AsyncConnection[Any], repository: str, paths: Iterable[str]
) -> list[Lesson]:
    """The active lessons about any of `paths` (general ones too), newest first, bounded."""
    wanted = list(paths)
    found = [lesson for lesson in await active(conn, repository) if lesson.applies_to(wanted)]
    return sorted(found, key=lambda lesson: -lesson.id)[:MAX_IN_PROMPT]


async def retire(conn: AsyncConnection[Any], lesson_id: int, by: str) -> bool:
    cur = await conn.execute(
        "UPDATE lessons SET retired_at = now(), retired_by = %s"
        " WHERE id = %s AND retired_at IS NULL RETURNING id",
        (by, lesson_id),
    )
    return await cur.fetchone() is not None


def _lesson(row: tuple[Any, ...]) -> Lesson:
    return Lesson(int(row[0]), str(row[1]), tuple(row[2]), str(row[3]), str(row[4]), row[5])
