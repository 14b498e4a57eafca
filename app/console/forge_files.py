"""The forge's files as the console shows them: where a `path:line` reference leads, and one
file of the local forge at one commit, read with git from the bare repository.

A reference into the local forge leads to `/console/files/<commit>/<path>#L<line>`; one into
a repository on GitHub to `<GitHub's web address>/<owner>/<repo>/blob/<commit>/<path>#L<line>`.
A file is shown line by line (each line its own anchor), coloured by pygments as the pull
request diffs are (`app.console.diff`; escaped plain past `COLOUR_LINES`), with the secrets
Persais was configured with cut out, as `/ask` cuts them out of its excerpts.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from pathlib import Path

from markupsafe import Markup, escape
from pygments import highlight

from app.console.diff import FORMATTER, lexer_for
from app.console.github_login import web_base
from app.settings import Settings

LOCAL_NAME = "persais"  # the home repository's name on the local forge (app.forge.local)
MAX_BYTES = 1_000_000  # a bigger file is not shown (GitHub's own viewer stops near there)
COLOUR_LINES = 5000  # past this, lines are escaped but not coloured (the page stays fast)
COMMIT = re.compile(r"^[0-9a-f]{7,40}$")
# `path:12` or `path:12-30` as /ask writes them (app.memory.answer); the path has no spaces.
REFERENCE = re.compile(r"([\w.][\w./-]*):(\d+)(?:-(\d+))?")


@dataclass(frozen=True)
class Piece:
    """A piece of an answer's text: plain, or a reference with where it leads."""

    text: str
    href: str | None = None


def bare_repository(settings: Settings) -> Path:
    """The local forge's bare repository (`LocalForge.bare`)."""
    return settings.home / "forge" / f"{LOCAL_NAME}.git"


def is_local(settings: Settings, repository: str) -> bool:
    return settings.home_repo is None and repository == LOCAL_NAME


def link(settings: Settings, repository: str, commit: str, path: str, start: int,
         end: int | None = None) -> str:  # fmt: skip
    """Where `path:start[-end]` of `repository` at `commit` is shown."""
    if is_local(settings, repository):
        return f"/console/files/{commit}/{path}#L{start}"
    lines = f"#L{start}" + (f"-L{end}" if end and end != start else "")
    return f"{web_base(settings.github_api_url)}/{repository}/blob/{commit}/{path}{lines}"


def pieces(
    text: str, references: tuple[str, ...], settings: Settings, repository: str,
    commit: str | None,
) -> list[Piece]:  # fmt: skip
    """`text` cut into plain pieces and links: a `path:line` becomes a link when its path is
    one of the answer's own references (so an address like `host:8000` stays text)."""
    known = {ref.rpartition(":")[0] for ref in references}
    found: list[Piece] = []
    at = 0
    for match in REFERENCE.finditer(text):
        path = match.group(1)
        if commit is None or path not in known:
            continue
        if match.start() > at:
            found.append(Piece(text[at : match.start()]))
        end = int(match.group(3)) if match.group(3) else None
        href = link(settings, repository, commit, path, int(match.group(2)), end)
        found.append(Piece(match.group(0), href))
        at = match.end()
    if at < len(text):
        found.append(Piece(text[at:]))
    return found


class NotShown(Exception):
    """The file cannot be shown; the message says why (for a 404 page)."""


def safe_path(path: str) -> bool:
    parts = path.split("/")
    return (
        0 < len(path) <= 1000
        and not path.startswith(("/", "-"))
        and all(part not in ("", ".", "..") for part in parts)
        and not any(c in path for c in "\0\n\r")
    )


async def read(settings: Settings, commit: str, path: str) -> list[str]:
    """The lines of `path` at `commit` in the local forge's bare repository."""
    if not COMMIT.match(commit) or not safe_path(path):
        raise NotShown("No such file.")
    bare = bare_repository(settings)
    if not (bare / "HEAD").exists():
        raise NotShown("The local forge has no repository yet.")
    kind = await _git(bare, "cat-file", "-t", f"{commit}:{path}")
    if kind is None or kind.strip() != b"blob":
        raise NotShown(f"{path} is not a file at {commit[:12]}.")
    size = await _git(bare, "cat-file", "-s", f"{commit}:{path}")
    if size is None or int(size) > MAX_BYTES:
        raise NotShown(f"{path} is too big to show here.")
    blob = await _git(bare, "cat-file", "blob", f"{commit}:{path}")
    if blob is None:
        raise NotShown("No such file.")
    if b"\0" in blob[:8000]:
        raise NotShown(f"{path} is a binary file.")
    from mechanic.redaction import redact  # not at import: the web process stays light

    return redact(blob.decode(errors="replace"), settings.secrets()).splitlines()


def coloured(path: str, lines: list[str]) -> list[Markup]:
    """One line of escaped HTML per line, coloured for the file's language."""
    if not lines or len(lines) > COLOUR_LINES:
        return [escape(line) for line in lines]
    out = highlight("\n".join(lines) + "\n", lexer_for(path), FORMATTER).split("\n")
    return [
        Markup(out[i]) if i < len(out) else escape(line)  # noqa: S704 (pygments escaped it)
        for i, line in enumerate(lines)
    ]


async def _git(bare: Path, *args: str) -> bytes | None:
    proc = await asyncio.create_subprocess_exec(
        "git", "--git-dir", str(bare), *args,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    out, _ = await proc.communicate()
    return out if proc.returncode == 0 else None
