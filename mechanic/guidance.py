"""What memory offers a Mechanic job: past jobs like it (examples that went well, warnings
from those that did not) and the lessons people taught about the paths it touches. The
service fills it (`app/memory`); the prompts show it. Empty by default."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Guidance:
    examples: tuple[str, ...] = ()  # past jobs that went well, each a few lines
    warnings: tuple[str, ...] = ()  # past jobs that failed, were aborted or rolled back
    lessons: tuple[str, ...] = ()  # one line each

    def __bool__(self) -> bool:
        return bool(self.examples or self.warnings or self.lessons)
