"""`/ask`: an answer about the home repository, with `path:line` references to its index.

With a model, the model writes the answer from the retrieved chunks and every reference it
makes is checked against them (a reference to anything else discards its answer). Without
one, the answer is the places themselves: each chunk's `path:start-end`, what it is and its
first line. Either way, when nothing in the index matches well enough, the answer says so.
"""

from __future__ import annotations

import ast
import math
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from app.memory.search import Hit

PROMPTS = Path(__file__).parent / "prompts"
DONT_KNOW = "I don't know"
MAX_EXCERPT_LINES = 80
_REFERENCE = re.compile(r"`?([\w.][\w./-]*):(\d+)(?:-(\d+))?`?")


class Model(Protocol):
    async def complete(
        self, prompt: str, *, json_output: bool = False, system: str | None = None
    ) -> str: ...


@dataclass(frozen=True)
class Answer:
    text: str
    references: tuple[str, ...]  # "path:start-end" of each place it rests on
    known: bool
    commit: str | None = None  # the indexed commit the references are at


def confident(hits: list[Hit]) -> bool:
    """Whether the best hits match the question well enough to answer from them: most of
    its words (at least two of them when it has two or more), or a near vector."""
    for hit in hits[:5]:
        if hit.similarity is not None and hit.similarity >= 0.8:
            return True
        needed = 1 if hit.terms <= 1 else max(2, math.ceil(hit.terms / 2))
        if hit.terms and hit.matched >= needed:
            return True
    return False


def not_known(repository: str, commit: str | None) -> Answer:
    at = f" at {commit[:7]}" if commit else ""
    return Answer(
        f"{DONT_KNOW}: nothing in the index of {repository}{at} answers that. Try other "
        "words, or name a file, a function or a command.",
        (),
        False,
        commit,
    )


def places(repository: str, commit: str | None, hits: list[Hit]) -> Answer:
    """The answer without a model: where to look, best first."""
    at = f" at {commit[:7]}" if commit else ""
    lines = [f"From the index of {repository}{at}, the places that answer it best:"]
    for hit in hits:
        lines.append(f"• {hit.where} — {_what(hit)}")
        summary = summary_line(hit)
        if summary:
            lines.append(f"    {summary}")
    return Answer("\n".join(lines), tuple(h.where for h in hits), True, commit)


async def written(
    model: Model, repository: str, commit: str | None, question: str, hits: list[Hit]
) -> Answer | None:
    """The model's answer from `hits`, or None when it names a place it was not shown."""
    marker = "UNTRUSTED-" + secrets.token_hex(8)
    env = Environment(
        loader=FileSystemLoader(PROMPTS), undefined=StrictUndefined,
        autoescape=False,  # noqa: S701 - prompts are plain text
    )  # fmt: skip
    system = env.get_template("ask.md").render(repository=repository, marker=marker)
    excerpts = "\n\n".join(
        f"### {hit.where} ({_what(hit)})\n{_excerpt(hit)}" for hit in hits
    ).replace(marker, "[marker removed]")
    user = (
        f"<<<{marker} BEGIN>>>\nQuestion: {question.replace(marker, '')}\n\n{excerpts}\n"
        f"<<<{marker} END>>>\n\nAnswer the question from the excerpts, with references."
    )
    text = (await model.complete(user, system=system)).strip()
    if not text or text.lower().startswith(DONT_KNOW.lower()):
        return not_known(repository, commit)
    cited = references(text)
    if not cited or not all(_shown(ref, hits) for ref in cited):
        return None
    at = f" ({repository} at {commit[:7]})" if commit else ""
    sources = "Sources" + at + ": " + ", ".join(h.where for h in hits)
    return Answer(f"{text[:3000]}\n\n{sources}", tuple(h.where for h in hits), True, commit)


def references(text: str) -> list[tuple[str, int, int]]:
    found: list[tuple[str, int, int]] = []
    for match in _REFERENCE.finditer(text):
        start = int(match.group(2))
        end = int(match.group(3) or start)
        found.append((match.group(1).strip("`"), start, max(start, end)))
    return found


def _shown(reference: tuple[str, int, int], hits: list[Hit]) -> bool:
    path, start, end = reference
    return any(h.path == path and h.start_line <= start and end <= h.end_line for h in hits)


def _what(hit: Hit) -> str:
    if hit.kind == "section":
        return hit.symbol.split(" > ", 1)[-1] if " > " in hit.symbol else hit.symbol
    if hit.kind in ("function", "method", "class"):
        return f"{hit.kind} {hit.symbol}"
    return hit.kind if hit.symbol == hit.path else f"{hit.kind} {hit.symbol}"


def summary_line(hit: Hit) -> str:
    """One line that says what the chunk is: its docstring's first line, else its first
    line of prose or code."""
    text = hit.content
    if hit.path.endswith(".py"):
        doc = _docstring(text)
        if doc:
            return _clip(doc)
    for line in text.splitlines():
        stripped = line.strip().lstrip("#").strip()
        if stripped and not stripped.startswith(("@", "from ", "import ", "```")):
            return _clip(stripped)
    return ""


def _docstring(text: str) -> str:
    try:
        tree = ast.parse(_dedent_block(text))
    except SyntaxError:
        return ""
    definitions = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    nodes: list[ast.AST] = [tree, *(n for n in tree.body if isinstance(n, definitions))]
    for node in nodes:
        assert isinstance(node, (ast.Module, *definitions))
        doc = ast.get_docstring(node)
        if doc:
            return doc.strip().split("\n\n")[0].replace("\n", " ")
    return ""


def _dedent_block(text: str) -> str:
    lines = text.splitlines()
    indent = min((len(x) - len(x.lstrip()) for x in lines if x.strip()), default=0)
    return "\n".join(x[indent:] for x in lines)


def _clip(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _excerpt(hit: Hit) -> str:
    lines = hit.content.splitlines()[:MAX_EXCERPT_LINES]
    return "\n".join(f"{hit.start_line + i}| {line}" for i, line in enumerate(lines))
