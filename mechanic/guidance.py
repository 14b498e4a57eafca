"""What a Mechanic job is told besides the request: what memory offers (past jobs like it,
examples that went well, warnings from those that did not, and the lessons people taught
about the paths it touches; `app/memory` fills those) and the home repository's own
conventions (`mechanic.conventions`, from its default branch). The prompts show it. Empty by
default."""

from __future__ import annotations

from dataclasses import dataclass

from mechanic.conventions import Conventions


@dataclass(frozen=True)
class Guidance:
    examples: tuple[str, ...] = ()  # past jobs that went well, each a few lines
    warnings: tuple[str, ...] = ()  # past jobs that failed, were aborted or rolled back
    lessons: tuple[str, ...] = ()  # one line each
    conventions: Conventions | None = None  # AGENTS.md or the like, on the default branch

    def __bool__(self) -> bool:
        """Whether memory has anything to say (the conventions are shown on their own)."""
        return bool(self.examples or self.warnings or self.lessons)
