"""From findings to what GitHub is sent: inline comments on diff lines, a digest, and a
summary.

A finding sits inline only on a line GitHub will accept (part of the diff on the new side),
and two findings on one line are one comment. A minor finding (below the severity floor, or
a model finding less sure than `review.min_confidence`) goes to a collapsed digest in the
summary instead, and so does anything not on a changed line. A finding already said on
this pull request (same source, rule or message, and the same line text; see
`fingerprints`) is not said again. Every comment, and the summary, carries the fingerprints
of what it says, hidden, for the next review to read back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import groupby
from typing import Literal

from app.review import fingerprints
from app.review.diff import Diff
from app.review.findings import ICON, RANK, Finding, Severity, minor, worst

MAX_INLINE = 50
MAX_LISTED = 100  # findings listed in the summary, and as many in the digest
Conclusion = Literal["success", "neutral", "failure"]
MAX_BODY = 60_000


@dataclass(frozen=True)
class Comment:
    path: str
    line: int
    body: str  # with its fingerprints hidden at the end
    fingerprints: tuple[str, ...]  # one per finding it carries
    severity: Severity  # the worst of them
    start_line: int | None = None

    @property
    def fingerprint(self) -> str:
        return self.fingerprints[0]

    def as_github(self) -> dict[str, object]:
        comment: dict[str, object] = {
            "path": self.path, "line": self.line, "side": "RIGHT", "body": self.body,
        }  # fmt: skip
        if self.start_line is not None and self.start_line < self.line:
            comment.update(start_line=self.start_line, start_side="RIGHT")
        return comment


@dataclass(frozen=True)
class Said:
    """One fingerprint said by a review, as the database keeps it."""

    fingerprint: str
    path: str
    line: int | None
    severity: Severity
    digest: bool  # a minor finding: it does not count for the check run


@dataclass
class Pinned:
    comments: list[Comment] = field(default_factory=list)
    loose: list[tuple[Finding, str]] = field(default_factory=list)  # (finding, fingerprint)
    digest: list[tuple[Finding, str]] = field(default_factory=list)  # minor findings
    repeated: int = 0  # said before on this pull request
    unlisted: int = 0  # past MAX_LISTED: neither said nor remembered

    @property
    def fingerprints(self) -> list[Said]:
        said = [
            Said(fp, c.path, c.line, c.severity, False)
            for c in self.comments
            for fp in c.fingerprints
        ]
        said += [Said(fp, f.path, f.line, f.severity, False) for f, fp in self.loose]
        return said + [Said(fp, f.path, f.line, f.severity, True) for f, fp in self.digest]

    @property
    def listed(self) -> list[str]:
        """The fingerprints the summary says (its loose and digest findings)."""
        return [fp for _, fp in self.loose] + [fp for _, fp in self.digest]


def split(
    findings: list[Finding], floor: Severity, min_confidence: float
) -> tuple[list[Finding], list[Finding]]:
    """(what is worth a comment, what goes to the digest)."""
    kept = [f for f in findings if not minor(f, floor, min_confidence)]
    return kept, [f for f in findings if minor(f, floor, min_confidence)]


def pin(
    findings: list[Finding], diff: Diff, posted: set[str], digest: list[Finding] | None = None
) -> Pinned:
    pinned = Pinned()
    seen = set(posted)

    def fresh(finding: Finding) -> str | None:
        fingerprint = fingerprint_of(finding, diff)
        if fingerprint in seen:
            pinned.repeated += 1
            return None
        seen.add(fingerprint)
        return fingerprint

    ordered = sorted(findings, key=lambda f: (f.path, f.line or 0, f.source))
    for (path, line), group in groupby(ordered, key=lambda f: (f.path, f.line)):
        said = [(f, fp) for f in group if (fp := fresh(f)) is not None]
        file = diff.get(path)
        on_diff = file is not None and line is not None and file.commentable(line)
        if said and on_diff and line is not None and len(pinned.comments) < MAX_INLINE:
            pinned.comments.append(_comment(said, diff, line))
        else:
            pinned.loose += said
    for finding in sorted(digest or [], key=lambda f: (f.path, f.line or 0, f.source)):
        fingerprint = fresh(finding)
        if fingerprint is not None:
            pinned.digest.append((finding, fingerprint))
    pinned.unlisted = max(0, len(pinned.loose) - MAX_LISTED)
    pinned.unlisted += max(0, len(pinned.digest) - MAX_LISTED)
    del pinned.loose[MAX_LISTED:], pinned.digest[MAX_LISTED:]
    return pinned


def fingerprint_of(finding: Finding, diff: Diff) -> str:
    file = diff.get(finding.path)
    line = finding.line
    return finding.fingerprint(file.text(line) if file is not None and line is not None else None)


def undismissed(findings: list[Finding], diff: Diff, dismissed: set[str]) -> list[Finding]:
    """The findings nobody dismissed (`/ignore`, 👎): those count for the check run."""
    return [f for f in findings if fingerprint_of(f, diff) not in dismissed]


def _comment(said: list[tuple[Finding, str]], diff: Diff, line: int) -> Comment:
    """One comment for the findings on one line: the worst first, and one suggestion (the
    worst finding's that has one), since a comment can be applied only one way."""
    said = sorted(said, key=lambda pair: -RANK[pair[0].severity])
    suggesting = next((f for f, _ in said if _offerable(f.replacement)), None)
    parts = [_text(f, with_suggestion=f is suggesting) for f, _ in said]
    prints = tuple(fp for _, fp in said)
    severity = worst([f for f, _ in said]) or "info"
    start = suggesting.start_line if suggesting is not None else None
    file = diff.get(said[0][0].path)
    if start is not None and not (
        file is not None and start < line and file.same_hunk(start, line)
    ):
        start = None
    body = fingerprints.hide("\n\n".join(parts), prints)
    return Comment(said[0][0].path, line, body, prints, severity, start)


def comment_body(finding: Finding) -> str:
    return _text(finding, with_suggestion=True)


def _text(finding: Finding, *, with_suggestion: bool) -> str:
    source = "review" if finding.source == "model" else finding.source
    message = fingerprints.defuse(finding.message)
    body = f"{ICON[finding.severity]} **{finding.severity}** ({source}): {message}"
    if with_suggestion and _offerable(finding.replacement):
        # Verbatim: it is what "Commit suggestion" and /fix write into the file.
        body += f"\n\n```suggestion\n{finding.replacement}\n```"
    return body


def _offerable(replacement: str | None) -> bool:
    """A suggestion written as it is, or none: backticks could close its fence and go on as
    the comment's Markdown (HTML, a second suggestion), and an HTML comment opener stays out
    of Persais's comments, while an escaped one would be committed as `&lt;!--`."""
    return replacement is not None and "```" not in replacement and "<!--" not in replacement


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
    """The review's body: counts, what is not on a changed line, the digest (collapsed),
    the notes, and the fingerprints of what it lists, hidden at the end."""
    counts = {s: sum(1 for f in findings if f.severity == s) for s in ("error", "warning", "info")}
    scope = f"changes since `{since[:7]}`" if since else "the whole pull request"
    lines = [
        f"## Persais review of `{head[:7]}`",
        "",
        f"Covers {scope}. Findings: {counts['error']} error(s), {counts['warning']} "
        f"warning(s), {counts['info']} note(s); {len(pinned.comments)} inline"
        + (f", {len(pinned.digest)} minor in the digest" if pinned.digest else "")
        + (f", {pinned.repeated} already said earlier and not repeated" if pinned.repeated else "")
        + (f", {pinned.unlisted} more not listed" if pinned.unlisted else "")
        + ".",
    ]
    if pinned.loose:
        lines += ["", "### Not on a changed line", ""]
        lines += [_listed(finding) for finding, _ in pinned.loose]
    if pinned.digest:
        # A blank line after <summary> so GitHub renders the list inside as Markdown.
        lines += ["", "<details>", f"<summary>{_digest_title(pinned.digest)}</summary>", ""]
        lines += [_listed(finding) for finding, _ in pinned.digest]
        lines += ["", "</details>"]
    if notes:
        lines += ["", *[f"> {fingerprints.defuse(note)}" for note in notes]]
    return fingerprints.hide("\n".join(lines)[:MAX_BODY], pinned.listed)


def _listed(finding: Finding) -> str:
    sure = f", {finding.confidence:.0%} sure" if finding.confidence < 1 else ""
    return (
        f"- {ICON[finding.severity]} `{fingerprints.defuse(finding.where())}` "
        f"({finding.source}{sure}): "
        f"{fingerprints.defuse(finding.message)}"
    )


def _digest_title(digest: list[tuple[Finding, str]]) -> str:
    return f"{len(digest)} minor or less certain finding(s), not inline"
