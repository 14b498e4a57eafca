"""A pull request's diff as the reviewer needs it: which lines a comment may sit on.

GitHub accepts a review comment only on a line that is part of the diff: on the new side
(`RIGHT`), an added line or a context line inside a hunk; on the old side (`LEFT`), a
removed or context line. `FileDiff` reads GitHub's per-file `patch` (the hunks, starting at
the first `@@`) and answers exactly that, so a finding is either pinned to a line GitHub
will take, or goes to the review's summary. Binary files and patches GitHub leaves out
(too large) have no commentable lines.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


@dataclass(frozen=True)
class Hunk:
    old_start: int
    old_count: int
    new_start: int
    new_count: int


@dataclass(frozen=True)
class FileDiff:
    path: str
    status: str  # added | removed | modified | renamed | copied | changed | unchanged
    previous_path: str | None = None
    patch: str | None = None  # None: binary, or too large for GitHub to show
    hunks: tuple[Hunk, ...] = ()
    added: Mapping[int, str] = field(default_factory=dict)  # new line -> its text
    context: Mapping[int, str] = field(default_factory=dict)  # new line -> its text
    removed: frozenset[int] = frozenset()  # old lines

    @classmethod
    def parse(
        cls, path: str, patch: str | None, *, status: str = "modified", previous: str | None = None
    ) -> FileDiff:
        if not patch:
            return cls(path, status, previous, None)
        hunks: list[Hunk] = []
        added: dict[int, str] = {}
        context: dict[int, str] = {}
        removed: set[int] = set()
        old = new = 0
        for line in patch.splitlines():
            header = _HUNK.match(line)
            if header:
                o, oc, n, nc = header.groups()
                hunk = Hunk(int(o), int(oc or 1), int(n), int(nc or 1))
                hunks.append(hunk)
                old, new = hunk.old_start, hunk.new_start
            elif not hunks or line.startswith("\\"):  # before the first hunk; "\ No newline"
                continue
            elif line.startswith("+"):
                added[new] = line[1:]
                new += 1
            elif line.startswith("-"):
                removed.add(old)
                old += 1
            else:  # a context line (" text", or "" for an empty one some tools trim)
                context[new] = line[1:]
                old += 1
                new += 1
        return cls(path, status, previous, patch, tuple(hunks), added, context, frozenset(removed))

    @classmethod
    def from_github(cls, entry: Mapping[str, Any]) -> FileDiff:
        """One entry of `GET /pulls/{n}/files` or of a comparison's `files`."""
        return cls.parse(
            str(entry["filename"]),
            entry.get("patch"),
            status=str(entry.get("status") or "modified"),
            previous=entry.get("previous_filename"),
        )

    @property
    def binary(self) -> bool:
        return self.patch is None and self.status != "removed"

    def commentable(self, line: int) -> bool:
        """May a comment sit on this line of the new file?"""
        return line in self.added or line in self.context

    def text(self, line: int) -> str | None:
        """The new file's text at `line`, when the diff shows it."""
        return self.added.get(line, self.context.get(line))

    def hunk_of(self, line: int) -> Hunk | None:
        for hunk in self.hunks:
            if hunk.new_start <= line < hunk.new_start + hunk.new_count:
                return hunk
        return None

    def same_hunk(self, first: int, last: int) -> bool:
        """A multi-line comment must start and end in one hunk."""
        hunk = self.hunk_of(first)
        return hunk is not None and hunk is self.hunk_of(last)


@dataclass(frozen=True)
class Diff:
    files: dict[str, FileDiff]

    @classmethod
    def from_github(cls, entries: Iterable[Mapping[str, Any]]) -> Diff:
        parsed = (FileDiff.from_github(entry) for entry in entries)
        return cls({f.path: f for f in parsed})

    def __contains__(self, path: object) -> bool:
        return path in self.files

    def get(self, path: str) -> FileDiff | None:
        return self.files.get(path)

    @property
    def changed_lines(self) -> int:
        return sum(len(f.added) + len(f.removed) for f in self.files.values())

    def restricted_to(self, paths: Iterable[str]) -> Diff:
        keep = set(paths)
        return Diff({p: f for p, f in self.files.items() if p in keep})
