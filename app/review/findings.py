"""A finding: something the reviewer has to say about one place in a change."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

Severity = Literal["info", "warning", "error"]
SEVERITIES: tuple[Severity, ...] = ("info", "warning", "error")
RANK = {name: rank for rank, name in enumerate(SEVERITIES)}
ICON = {"info": "💡", "warning": "⚠️", "error": "⛔"}


@dataclass(frozen=True)
class Finding:
    path: str
    line: int | None  # a line of the new file; None: about the file as a whole
    severity: Severity
    message: str
    source: str  # "policy" | "ruff" | "secrets" | "model"
    rule: str = ""
    replacement: str | None = None  # a ```suggestion for the lines start_line..line
    start_line: int | None = None
    # How sure the finder is, 0..1: the model says so of each finding (a guess goes to the
    # digest); a static check is certain.
    confidence: float = 1.0

    def fingerprint(self, anchor: str | None) -> str:
        """Who said what about which text. The line's text, not its number, so a finding
        that only moved (lines added above it) is recognised on a re-review."""
        key = "\0".join(
            [
                self.path,
                self.source,
                self.rule or self.message.strip().lower(),
                (anchor or "").strip(),
            ]
        )
        return hashlib.sha256(key.encode()).hexdigest()[:32]

    def where(self) -> str:
        return f"{self.path}:{self.line}" if self.line else self.path


def at_least(findings: list[Finding], floor: Severity) -> list[Finding]:
    return [f for f in findings if RANK[f.severity] >= RANK[floor]]


def minor(finding: Finding, floor: Severity, min_confidence: float) -> bool:
    """Below the repository's severity floor, or a model finding less sure than it asks:
    worth a line in the collapsed digest, not a comment on the diff."""
    unsure = finding.source == "model" and finding.confidence < min_confidence
    return unsure or RANK[finding.severity] < RANK[floor]


def worst(findings: list[Finding]) -> Severity | None:
    return max((f.severity for f in findings), key=RANK.__getitem__, default=None)
