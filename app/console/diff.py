"""Git's unified diffs for the console: parsed into files and lines (renames, binary files,
"no newline at end of file"), each line coloured by pygments for its file's language and
marked added, removed or context. Every line's HTML is escaped here, by pygments or by
markupsafe, so a template may show it as it is.

A page must stay fast however large the change: a file shows at most `max_lines` lines, and
past the colouring budget lines are escaped but not coloured."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from markupsafe import Markup, escape
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexer import Lexer
from pygments.lexers import get_lexer_for_filename
from pygments.lexers.special import TextLexer
from pygments.util import ClassNotFound

MAX_LINES = 2000  # per file
STYLE = "default"
HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@(.*)$")

Kind = Literal["add", "del", "ctx", "hunk", "note"]
Status = Literal["added", "deleted", "modified", "renamed", "copied"]


@dataclass
class DiffLine:
    kind: Kind
    old: int | None  # the line's number before (None: added, or not a line of the file)
    new: int | None  # and after (None: removed)
    text: str  # without the leading '+', '-' or ' '
    html: Markup = field(default_factory=Markup)  # set by `colour`


@dataclass
class FileDiff:
    old_path: str | None  # None: the file is new
    new_path: str | None  # None: the file was deleted
    status: Status = "modified"
    binary: bool = False
    similarity: int | None = None  # a rename's or copy's, in percent
    old_mode: str | None = None
    new_mode: str | None = None
    added: int = 0  # every line, shown or not
    removed: int = 0
    lines: list[DiffLine] = field(default_factory=list)
    truncated: bool = False  # more lines than shown

    @property
    def path(self) -> str:
        return self.new_path or self.old_path or ""


def parse(patch: str, *, max_lines: int = MAX_LINES) -> list[FileDiff]:
    """`git diff`'s output, file by file. Lines past `max_lines` in a file are counted, not
    kept. A hunk's line counts say where it ends, so a removed line that reads "-- x" is
    a line, not a header."""
    files: list[FileDiff] = []
    current: FileDiff | None = None
    old_left = new_left = 0  # lines still to come in the current hunk
    old_no = new_no = 0
    for raw in patch.split("\n"):
        if current is not None and (old_left > 0 or new_left > 0) and not raw.startswith("\\"):
            kind: Kind = "add" if raw.startswith("+") else "del" if raw.startswith("-") else "ctx"
            if kind == "add":
                current.added += 1
                new_left -= 1
                line = DiffLine(kind, None, new_no, raw[1:])
                new_no += 1
            elif kind == "del":
                current.removed += 1
                old_left -= 1
                line = DiffLine(kind, old_no, None, raw[1:])
                old_no += 1
            else:  # ' ' (or an empty line, when something stripped the space)
                old_left -= 1
                new_left -= 1
                line = DiffLine(kind, old_no, new_no, raw[1:])
                old_no += 1
                new_no += 1
            _keep(current, line, max_lines)
            continue
        if raw.startswith("diff --git "):
            current = _header_paths(raw[len("diff --git ") :])
            files.append(current)
            continue
        if current is None:
            continue
        if (hunk := HUNK.match(raw)) is not None:
            old_no, new_no = int(hunk[1]), int(hunk[3])
            old_left = int(hunk[2]) if hunk[2] is not None else 1
            new_left = int(hunk[4]) if hunk[4] is not None else 1
            _keep(current, DiffLine("hunk", None, None, raw), max_lines)
        elif raw.startswith("\\"):
            _keep(current, DiffLine("note", None, None, raw[1:].strip()), max_lines)
        else:
            _header_line(current, raw)
    return files


def _keep(file: FileDiff, line: DiffLine, max_lines: int) -> None:
    if len(file.lines) < max_lines:
        file.lines.append(line)
    else:
        file.truncated = True


def _header_line(file: FileDiff, raw: str) -> None:
    """One of the lines between `diff --git` and the first hunk."""
    word, _, rest = raw.partition(" ")
    if raw.startswith("new file mode "):
        file.status, file.old_path, file.new_mode = "added", None, raw.rsplit(" ", 1)[1]
    elif raw.startswith("deleted file mode "):
        file.status, file.new_path, file.old_mode = "deleted", None, raw.rsplit(" ", 1)[1]
    elif word in ("old", "new") and rest.startswith("mode "):
        setattr(file, f"{word}_mode", rest.removeprefix("mode "))
    elif raw.startswith(("rename from ", "copy from ")):
        file.status = "renamed" if word == "rename" else "copied"
        file.old_path = unquote(raw.split(" ", 2)[2])
    elif raw.startswith(("rename to ", "copy to ")):
        file.new_path = unquote(raw.split(" ", 2)[2])
    elif raw.startswith(("similarity index ", "dissimilarity index ")):
        file.similarity = int(raw.rsplit(" ", 1)[1].rstrip("%") or 0)
    elif raw.startswith(("Binary files ", "GIT binary patch")):
        file.binary = True
    elif word in ("---", "+++") and rest:
        path = None if rest == "/dev/null" else _strip_prefix(unquote(rest.removesuffix("\t")))
        if word == "---" and file.status != "added":
            file.old_path = path
        elif word == "+++" and file.status != "deleted":
            file.new_path = path


def _header_paths(rest: str) -> FileDiff:
    """`a/<path> b/<path>` of a `diff --git` line: quoted, or the same path twice (the
    `---`/`+++` and rename lines that follow say it exactly when they are there)."""
    if rest.startswith('"') or rest.endswith('"'):
        tokens = re.findall(r'"(?:[^"\\]|\\.)*"|[^ ]+', rest)
        if len(tokens) == 2:
            old, new = (_strip_prefix(unquote(t)) for t in tokens)
            return FileDiff(old, new)
    half = (len(rest) - 1) // 2
    if rest[half] == " " and rest[2:half] == rest[half + 3 :]:
        path = rest[2:half]
        return FileDiff(path, path)
    old, _, new = rest.partition(" b/")
    return FileDiff(_strip_prefix(old), new)


def _strip_prefix(path: str) -> str:
    return path[2:] if path.startswith(("a/", "b/")) else path


def unquote(text: str) -> str:
    """A path as git writes it: as it is, or C-quoted ("t\\303\\251st" for "tést")."""
    if len(text) < 2 or not (text.startswith('"') and text.endswith('"')):
        return text
    out = bytearray()
    body, i = text[1:-1], 0
    simple = {"n": b"\n", "t": b"\t", "r": b"\r", '"': b'"', "\\": b"\\", "a": b"\a",
              "b": b"\b", "f": b"\f", "v": b"\v"}  # fmt: skip
    while i < len(body):
        char = body[i]
        if char == "\\" and i + 1 < len(body):
            following = body[i + 1]
            if following in "0123" and re.fullmatch(r"[0-7]{3}", body[i + 1 : i + 4]):
                out.append(int(body[i + 1 : i + 4], 8))
                i += 4
                continue
            out += simple.get(following, following.encode())
            i += 2
            continue
        out += char.encode()
        i += 1
    return out.decode(errors="replace")


def lexer_for(path: str) -> Lexer:
    """Pygments' lexer for a file's name; plain text when none fits."""
    try:
        found: Lexer = get_lexer_for_filename(path, stripnl=False, ensurenl=False)
        return found
    except ClassNotFound:
        return TextLexer(stripnl=False, ensurenl=False)


FORMATTER = HtmlFormatter(nowrap=True)


def colour(files: list[FileDiff], *, budget: int = 20_000) -> None:
    """Fill each line's `html`: coloured while `budget` lines last, escaped after. A hunk's
    old side (context and removed lines) and new side (context and added) are each
    highlighted as one text, so a string or comment that spans lines stays one."""
    for file in files:
        lexer = lexer_for(file.path) if budget > 0 else None
        for hunk in _hunks(file.lines):
            budget -= len(hunk)
            if lexer is None or budget < 0:
                for line in hunk:
                    line.html = escape(line.text)
                continue
            old = iter(_highlighted([ln.text for ln in hunk if ln.kind != "add"], lexer))
            new = iter(_highlighted([ln.text for ln in hunk if ln.kind != "del"], lexer))
            for line in hunk:
                line.html = next(old) if line.kind == "del" else next(new)
                if line.kind == "ctx":
                    next(old)  # the same line on the old side
        for line in file.lines:
            if line.kind in ("hunk", "note"):
                line.html = escape(line.text)


def _hunks(lines: list[DiffLine]) -> list[list[DiffLine]]:
    """The runs of code lines between hunk headers."""
    runs: list[list[DiffLine]] = [[]]
    for line in lines:
        if line.kind == "hunk":
            runs.append([])
        elif line.kind != "note":
            runs[-1].append(line)
    return [run for run in runs if run]


def _highlighted(texts: list[str], lexer: Lexer) -> list[Markup]:
    """One escaped, coloured line of HTML per text (pygments closes its spans at each line
    end). Pygments reads a lone carriage return as a line end too: when its lines do not
    match the texts one to one, they are escaped plain rather than shown beside the wrong
    line numbers."""
    if not texts:
        return []
    out = highlight("\n".join(texts) + "\n", lexer, FORMATTER).split("\n")
    if len(out) != len(texts) + 1:  # the last is what follows the final line end
        return [escape(text) for text in texts]
    return [Markup(line) for line in out[:-1]]  # noqa: S704 (pygments escaped it)


def stylesheet() -> str:
    """The colours of pygments' classes, scoped to `.highlight` (static/pygments.css is this,
    written by `python -m app.console.diff`; a test keeps them equal)."""
    defs: str = HtmlFormatter(style=STYLE).get_style_defs(".highlight")  # type: ignore[no-untyped-call]
    kept = [rule for rule in defs.splitlines() if rule.startswith(".highlight ")]
    heading = f"/* Generated by `python -m app.console.diff`: pygments' {STYLE} style. */"
    return "\n".join([heading, *kept]) + "\n"


if __name__ == "__main__":
    from pathlib import Path

    (Path(__file__).parent / "static" / "pygments.css").write_text(stylesheet())
