"""From findings to what GitHub is sent: inline comments on diff lines, and a summary.

A finding sits inline only on a line GitHub will accept (part of the diff on the new side);
everything else goes to the summary. A finding already posted on this pull request (same
source, rule or message, and the same line text) is not posted again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from app.review.diff import Diff
from app.review.findings import ICON, Finding, Severity, worst

MAX_INLINE = 50
Conclusion = Literal["success", "neutral", "failure"]
MAX_BODY = 60_000


@dataclass(frozen=True)
class Comment:
    path: str
    line: int
    body: str
    fingerprint: str
    severity: Severity
    start_line: int | None = None

    def as_github(self) -> dict[str, object]:
        comment: dict[str, object] = {
            "path": self.path, "line": self.line, "side": "RIGHT", "body": self.body,
        }  # fmt: skip
        if self.start_line is not None and self.start_line < self.line:
            comment.update(start_line=self.start_line, start_side="RIGHT")
        return comment


@dataclass
class Pinned:
    comments: list[Comment] = field(default_factory=list)
    loose: list[tuple[Finding, str]] = field(default_factory=list)  # (finding, fingerprint)
    repeated: int = 0  # said before on this pull request

    @property
    def fingerprints(self) -> list[tuple[str, Finding | Comment]]:
        return [(c.fingerprint, c) for c in self.comments] + [(fp, f) for f, fp in self.loose]


def pin(findings: list[Finding], diff: Diff, posted: set[str]) -> Pinned:
    pinned = Pinned()
    seen = set(posted)
    for finding in sorted(findings, key=lambda f: (f.path, f.line or 0, f.source)):
        file = diff.get(finding.path)
        line = finding.line
        on_diff = file is not None and line is not None and file.commentable(line)
        anchor = file.text(line) if file is not None and line is not None else None
        fingerprint = finding.fingerprint(anchor)
        if fingerprint in seen:
            pinned.repeated += 1
            continue
        seen.add(fingerprint)
        if on_diff and file is not None and line is not None and len(pinned.comments) < MAX_INLINE:
            start = finding.start_line
            if start is not None and not (start < line and file.same_hunk(start, line)):
                start = None
            pinned.comments.append(
                Comment(
                    finding.path, line, comment_body(finding), fingerprint, finding.severity, start
                )
            )
        else:
            pinned.loose.append((finding, fingerprint))
    return pinned


def comment_body(finding: Finding) -> str:
    source = "review" if finding.source == "model" else finding.source
    body = f"{ICON[finding.severity]} **{finding.severity}** ({source}): {finding.message}"
    if finding.replacement is not None:
        body += f"\n\n```suggestion\n{finding.replacement}\n```"
    return body


def conclusion(findings: list[Finding]) -> Conclusion:
    """The check run's verdict: an error fails it, a warning makes it neutral."""
    found = worst(findings)
    return "failure" if found == "error" else "neutral" if found == "warning" else "success"


def summary(
    *,
    head: str,
    since: str | None,
    pinned: Pinned,
    findings: list[Finding],
    notes: list[str],
) -> str:
    counts = {s: sum(1 for f in findings if f.severity == s) for s in ("error", "warning", "info")}
    scope = f"changes since `{since[:7]}`" if since else "the whole pull request"
    lines = [
        f"## Persais review of `{head[:7]}`",
        "",
        f"Covers {scope}. Findings: {counts['error']} error(s), {counts['warning']} "
        f"warning(s), {counts['info']} note(s); {len(pinned.comments)} inline"
        + (f", {pinned.repeated} already said earlier and not repeated" if pinned.repeated else "")
        + ".",
    ]
    if pinned.loose:
        lines += ["", "### Not on a changed line", ""]
        for finding, _ in pinned.loose[:100]:
            lines.append(
                f"- {ICON[finding.severity]} `{finding.where()}` ({finding.source}): "
                f"{finding.message}"
            )
    if notes:
        lines += ["", *[f"> {note}" for note in notes]]
    return "\n".join(lines)[:MAX_BODY]
