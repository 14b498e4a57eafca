"""Cut a file into chunks along its structure: Python by functions, classes and methods,
markdown by sections, anything else by blocks between blank lines. Never fixed windows:
a chunk is something a person would point at ("the `deploy` method", "the section on Fly").

Pure: text in, chunks out. Line numbers are 1-based and inclusive.
"""

from __future__ import annotations

import ast
import hashlib
import itertools
import re
from dataclasses import dataclass

MAX_LINES = 150  # a longer piece is cut at its own inner boundaries (methods, paragraphs)
SMALL_CLASS = 60  # a class this short is one chunk; a longer one is cut into its methods

INDEXED_SUFFIXES = frozenset(
    {".py", ".md", ".toml", ".yml", ".yaml", ".sql", ".j2", ".txt", ".cfg", ".ini", ".sh",
     ".json", ".ref", ".example"}
)  # fmt: skip
INDEXED_NAMES = frozenset({"Dockerfile", "Makefile", "run", ".gitignore", ".dockerignore"})
MAX_BYTES = 200_000


@dataclass(frozen=True)
class Chunk:
    path: str
    start_line: int
    end_line: int
    kind: str  # module | function | class | method | section | block
    symbol: str  # "Deployments.run", "README > Configure > Fly", the path for a block
    content: str

    @property
    def content_hash(self) -> str:
        """What the embedding depends on: the same text at another path is the same vector."""
        return hashlib.sha256(
            embedding_text(self.path, self.symbol, self.content).encode()
        ).hexdigest()


def embedding_text(path: str, symbol: str, content: str) -> str:
    """A chunk as it is embedded: where it is and what it is, then its text."""
    return f"{path} · {symbol}\n{content}"


def indexed(path: str, size: int) -> bool:
    """Whether a file of the repository goes into the index."""
    name = path.rsplit("/", 1)[-1]
    suffix = "." + name.rsplit(".", 1)[-1] if "." in name else ""
    if size > MAX_BYTES or size == 0:
        return False
    if suffix == ".json" and size > 20_000:  # recorded payloads: data, not knowledge
        return False
    return suffix in INDEXED_SUFFIXES or name in INDEXED_NAMES


def chunk(path: str, text: str) -> list[Chunk]:
    if "\x00" in text:
        return []
    lines = text.splitlines()
    if not any(line.strip() for line in lines):
        return []
    if path.endswith(".py"):
        try:
            return _python(path, lines, ast.parse(text))
        except (SyntaxError, ValueError):
            pass  # a broken file is still text
    if path.endswith(".md"):
        return _markdown(path, lines)
    return _blocks(path, lines, 1, len(lines), path, "block")


# --- Python ---------------------------------------------------------------------------


def _python(path: str, lines: list[str], tree: ast.Module) -> list[Chunk]:
    module = path.removesuffix(".py").replace("/", ".").removesuffix(".__init__")
    chunks: list[Chunk] = []
    loose: list[tuple[int, int]] = []  # top-level statements that are not definitions
    for node in tree.body:
        start, end = _span(node, lines)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            chunks += _piece(path, lines, start, end, "function", node.name, node)
        elif isinstance(node, ast.ClassDef):
            chunks += _class(path, lines, node, start, end)
        else:
            loose.append((start, end))
    chunks += _loose(path, lines, loose, module)
    return sorted(chunks, key=lambda c: c.start_line)


def _span(node: ast.stmt, lines: list[str]) -> tuple[int, int]:
    """The statement's lines, with its decorators and the comment lines right above it."""
    start = node.lineno
    decorators = getattr(node, "decorator_list", [])
    if decorators:
        start = min(start, *(d.lineno for d in decorators))
    while start > 1 and lines[start - 2].lstrip().startswith("#"):
        start -= 1
    return start, node.end_lineno or node.lineno


def _class(path: str, lines: list[str], node: ast.ClassDef, start: int, end: int) -> list[Chunk]:
    if end - start + 1 <= SMALL_CLASS:
        return [_make(path, lines, start, end, "class", node.name)]
    methods = [n for n in node.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    if not methods:
        return _piece(path, lines, start, end, "class", node.name, node)
    chunks: list[Chunk] = []
    first, _ = _span(methods[0], lines)
    if first > start:  # the class line, its docstring and class-level fields
        chunks += _blocks(path, lines, start, first - 1, node.name, "class")
    covered = first
    for method in methods:
        m_start, m_end = _span(method, lines)
        if m_start > covered:  # fields between methods
            chunks += _blocks(path, lines, covered, m_start - 1, node.name, "class")
        symbol = f"{node.name}.{method.name}"
        chunks += _piece(path, lines, m_start, m_end, "method", symbol, method)
        covered = m_end + 1
    if covered <= end:
        chunks += _blocks(path, lines, covered, end, node.name, "class")
    return [c for c in chunks if c.kind != "class" or not _only_comments(c.content)]


def _only_comments(text: str) -> bool:
    """A banner comment between methods ("# --- the steps ---") is no chunk of its own."""
    return all(not line.strip() or line.lstrip().startswith("#") for line in text.splitlines())


def _piece(
    path: str, lines: list[str], start: int, end: int, kind: str, symbol: str, node: ast.AST
) -> list[Chunk]:
    """One definition; a very long one is cut between its top-level statements."""
    if end - start + 1 <= MAX_LINES:
        return [_make(path, lines, start, end, kind, symbol)]
    body = getattr(node, "body", [])
    cuts = [start] + [s.lineno for s in body[1:]] + [end + 1]
    chunks: list[Chunk] = []
    piece_start = start
    for a, b in itertools.pairwise(cuts):
        if b - piece_start > MAX_LINES and a > piece_start:
            chunks += _blocks(path, lines, piece_start, a - 1, symbol, kind)
            piece_start = a
    chunks += _blocks(path, lines, piece_start, end, symbol, kind)
    return chunks


def _loose(path: str, lines: list[str], spans: list[tuple[int, int]], module: str) -> list[Chunk]:
    """Runs of top-level statements between definitions (docstring, imports, constants)."""
    chunks: list[Chunk] = []
    run: tuple[int, int] | None = None
    for start, end in spans:
        if run is not None and start - run[1] <= 2:
            run = (run[0], end)
            continue
        if run is not None:
            chunks += _blocks(path, lines, run[0], run[1], module, "module")
        run = (start, end)
    if run is not None:
        chunks += _blocks(path, lines, run[0], run[1], module, "module")
    return chunks


# --- Markdown ---------------------------------------------------------------------------

_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")


def _markdown(path: str, lines: list[str]) -> list[Chunk]:
    title = path.rsplit("/", 1)[-1].removesuffix(".md")
    trail: list[tuple[int, str]] = []  # (level, heading) of the sections we are inside
    starts: list[tuple[int, str]] = []  # (line, symbol) where each section begins
    fenced = False
    for number, line in enumerate(lines, 1):
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        match = None if fenced else _HEADING.match(line)
        if match is None:
            continue
        level = len(match.group(1))
        trail = [(lv, h) for lv, h in trail if lv < level] + [(level, match.group(2))]
        starts.append((number, " > ".join([title] + [h for _, h in trail])))
    if not starts or starts[0][0] > 1:
        starts.insert(0, (1, title))
    chunks: list[Chunk] = []
    ends = [*starts[1:], (len(lines) + 1, "")]
    for (start, symbol), (following, _) in zip(starts, ends, strict=True):
        chunks += _blocks(path, lines, start, following - 1, symbol, "section")
    return chunks


# --- Anything else, and long pieces -----------------------------------------------------


def _blocks(
    path: str, lines: list[str], start: int, end: int, symbol: str, kind: str
) -> list[Chunk]:
    """Lines start..end as one chunk, or, when longer than MAX_LINES, as several cut at
    blank lines (at a hard limit where there are none). Blank edges are trimmed."""
    while start <= end and not lines[start - 1].strip():
        start += 1
    while end >= start and not lines[end - 1].strip():
        end -= 1
    if start > end:
        return []
    if end - start + 1 <= MAX_LINES:
        return [_make(path, lines, start, end, kind, symbol)]
    chunks: list[Chunk] = []
    piece = start
    last_blank = None
    for number in range(start, end + 1):
        if not lines[number - 1].strip():
            last_blank = number
        if number - piece + 1 >= MAX_LINES:
            cut = last_blank if last_blank and last_blank > piece + MAX_LINES // 3 else number
            chunks += _blocks(path, lines, piece, cut, symbol, kind)
            piece, last_blank = cut + 1, None
    if piece <= end:
        chunks += _blocks(path, lines, piece, end, symbol, kind)
    return chunks


def _make(path: str, lines: list[str], start: int, end: int, kind: str, symbol: str) -> Chunk:
    return Chunk(path, start, end, kind, symbol, "\n".join(lines[start - 1 : end]))
