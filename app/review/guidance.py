"""Repository guidance for the reviewer: what the maintainers wrote down for it.

Two sources, both read from the default branch only (merged by the maintainers; a pull
request cannot add to them without being merged first): the repository's conventions
(`mechanic.conventions`: `AGENTS.md`, `CONTRIBUTING.md` or `CONVENTIONS.md`, the same file the
Mechanic follows) and the instructions of the `review.paths` rules that match the files under
review. The text goes into the model's system message as repository guidance, apart from
the pull request's data (`app.review.model.prompt`), bounded and with secrets redacted.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

from app.review.config import CONFIG_PATH, PathRule, ReviewConfig
from mechanic import conventions, redaction
from mechanic.conventions import Conventions

MAX_RULES_CHARS = 4000  # every matching rule's instructions together
# (path, ref) -> (text, blob sha), None when absent: `PullOnGitHub.read`.
Reader = Callable[[str, str], Awaitable[tuple[str | None, str | None]]]


async def read(reader: Reader, branch: str, config: ReviewConfig, paths: Iterable[str]) -> str:
    """The guidance for a review of `paths`, from `branch` (the default one); "" if none."""
    return compose(await conventions_at(reader, branch), matching(config, paths))


async def conventions_at(reader: Reader, branch: str) -> Conventions | None:
    """The first of `conventions.FILES` on `branch` that says something."""
    for name in conventions.FILES:
        text, _ = await reader(name, branch)
        if text is not None and len(text) <= conventions.MAX_BYTES:
            found = conventions.compose(name, text)
            if found is not None:
                return found
    return None


def matching(config: ReviewConfig, paths: Iterable[str]) -> list[tuple[PathRule, list[str]]]:
    """The rules with instructions that are the first match of at least one of `paths`, in
    the configuration's order, each with the paths it applies to."""
    applies: dict[int, list[str]] = {}
    for path in sorted(paths):
        rule = config.rule_for(path)
        if rule is not None and rule.instructions.strip() and not rule.skip:
            applies.setdefault(config.paths.index(rule), []).append(path)
    return [(config.paths[i], applies[i]) for i in sorted(applies)]


def compose(found: Conventions | None, rules: list[tuple[PathRule, list[str]]]) -> str:
    """The guidance text: the path rules' instructions first (they are the most specific),
    then the conventions."""
    parts: list[str] = []
    if rules:
        lines = [f"Instructions for files of this diff (`review.paths` in {CONFIG_PATH}):"]
        used = 0
        for rule, paths in rules:
            # How many files, not their names: a path is the pull request's text (it may hold
            # spaces, line breaks, "SYSTEM: ..."), and this goes into the system message.
            said = " ".join(redaction.redact(rule.instructions).split())
            line = f"- `{rule.path}` ({len(paths)} file(s) of this diff): {said}"
            if used + len(line) > MAX_RULES_CHARS:
                lines.append("- (further rules left out: too long)")
                break
            lines.append(line)
            used += len(line)
        parts.append("\n".join(lines))
    if found is not None:
        parts.append(f"The repository's conventions ({found.source}):\n{found.text}")
    return "\n\n".join(parts)
