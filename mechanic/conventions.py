"""A repository's own conventions: `AGENTS.md`, `CONTRIBUTING.md` or `CONVENTIONS.md`.

Maintainers write down how code is made in their repository; the reviewer and the Mechanic
both follow it. It is read from the default branch only (what the maintainers merged, never
what a pull request proposes), the first of `FILES` that is there, cut to `MAX_CHARS` and
with any secret redacted: it goes into a model's prompt as repository guidance.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mechanic import redaction
from mechanic.workspace import GitError, git

FILES = ("AGENTS.md", "CONTRIBUTING.md", "CONVENTIONS.md", ".github/CONTRIBUTING.md")
MAX_CHARS = 8 * 1024
MAX_BYTES = 1024 * 1024  # a larger file is not read at all (it is not a style guide)


@dataclass(frozen=True)
class Conventions:
    source: str  # the file it came from, e.g. "AGENTS.md"
    text: str  # redacted, at most MAX_CHARS and a line saying it was cut


def compose(source: str, text: str, limit: int = MAX_CHARS) -> Conventions | None:
    """The conventions in `text`, read from `source`; None when there is nothing in it."""
    text = redaction.redact(text).strip()
    if not text:
        return None
    if len(text) > limit:
        text = text[:limit].rstrip() + f"\n[… cut: {source} is longer than {limit} characters]"
    return Conventions(source, text)


async def read(repository: Path, ref: str = "main") -> Conventions | None:
    """The conventions of the git `repository` (bare or not) at `ref`, its default branch:
    the Mechanic's base, never a pull request's branch."""
    for name in FILES:
        spec = f"{ref}:{name}"
        try:
            kind = (await git("cat-file", "-t", spec, cwd=repository)).strip()
            if kind != "blob" or int(await git("cat-file", "-s", spec, cwd=repository)) > MAX_BYTES:
                continue
            raw = await git("cat-file", "blob", spec, cwd=repository)
        except (GitError, ValueError):
            continue  # not there (or no such ref): the next name
        found = compose(name, raw)
        if found is not None:
            return found
    return None
