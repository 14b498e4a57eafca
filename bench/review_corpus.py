"""Review corpus benchmark (issue 20): the static stage's precision and recall, and the
comments it posts per pull request, on the labelled corpus in `bench/review_corpus/`.

    .venv/bin/python bench/review_corpus.py

Each case is a small pull request on click 8.5.1 or attrs 26.1.0 (vendored, with their
licenses): half with one planted defect, half clean (see bench/review_corpus/README.md).
For each, the static stage runs as the reviewer runs it: the `Diff` from the per-file
patches (GitHub's shape: the hunks from the first `@@`), the head's text of the files
`static.wanted` names, `static.findings`, `compose.split` with the default configuration,
then `compose.pin` onto the diff with nothing posted before. Nothing is faked there: ruff runs
for real, as in a review.

A second pass gives the static stage each project's own ruff configuration (`[tool.ruff]`
of its release's `pyproject.toml`, vendored as `upstream/<project>/pyproject.toml.txt`)
through `static.check(..., ruff_config=...)`, as the reviewer does for a repository that
has one.

A finding is a hit when it is on the planted defect's file within one line of it; every
other finding is a false alarm (all of a clean case's findings are). Precision is hits over
findings, and flagged pull requests whose defect was found over flagged pull requests;
recall is planted defects found over planted defects.

The model stage runs once per case against the scripted OpenAI-compatible server
(`tests/support/scripted_llm.py`) with a canned answer, through `model.review()` and
`compose.pin`, to prove the plumbing: the prompt carries the case, the answer is parsed,
an item on a file the model was not shown is dropped, the kept one lands inline. It
measures nothing about a model's judgement: that needs a real model, and is not measured.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import sys
import time
import tomllib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.review import compose, ruff_config, static  # noqa: E402
from app.review import model as model_review  # noqa: E402
from app.review.config import ReviewConfig  # noqa: E402
from app.review.diff import Diff, FileDiff  # noqa: E402
from app.review.findings import Finding  # noqa: E402
from app.review.ruff_config import RuffConfig  # noqa: E402
from mechanic import redaction  # noqa: E402
from mechanic.llm import ChatModel  # noqa: E402

CORPUS = ROOT / "bench" / "review_corpus"
_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+\d+(?:,\d+)? @@")
NEAR = 1  # a finding within this many lines of the planted defect is a hit


@dataclass(frozen=True)
class Label:
    defect: bool
    rule: str = ""
    kind: str = ""
    path: str = ""
    line: int = 0
    why: str = ""
    reviewer_rules: bool = True  # the rule is within what the static stage checks


@dataclass(frozen=True)
class Case:
    id: str
    upstream: str
    title: str
    body: str
    label: Label
    diff: Diff
    heads: dict[str, str]  # path -> the head's text (not for removed files)


@dataclass
class Result:
    case: Case
    findings: list[Finding]
    pinned: compose.Pinned
    notes: list[str] = field(default_factory=list)  # the static stage's, for the review
    digest: list[Finding] = field(default_factory=list)  # minor: not counted as findings

    @property
    def hits(self) -> list[Finding]:
        return [f for f in self.findings if near(f, self.case.label)]

    @property
    def found(self) -> bool:
        return bool(self.hits)

    @property
    def found_inline(self) -> bool:
        label = self.case.label
        return label.defect and any(
            c.path == label.path and abs(c.line - label.line) <= NEAR for c in self.pinned.comments
        )

    @property
    def false_alarms(self) -> list[Finding]:
        return [f for f in self.findings if not near(f, self.case.label)]

    @property
    def rule_agrees(self) -> bool:
        rule = self.case.label.rule
        return any(
            f.rule == rule or (rule == "secret" and f.source == "secrets") for f in self.hits
        )


def near(finding: Finding, label: Label) -> bool:
    return (
        label.defect
        and finding.path == label.path
        and finding.line is not None
        and abs(finding.line - label.line) <= NEAR
    )


# === reading the corpus ===================================================================


def case_dirs() -> list[Path]:
    return sorted(p for p in (CORPUS / "cases").iterdir() if p.is_dir())


def load_case(folder: Path) -> Case:
    meta = tomllib.loads((folder / "case.toml").read_text(encoding="utf-8"))
    keys = ("defect", "rule", "kind", "path", "line", "why", "reviewer_rules")
    label = Label(**{k: meta[k] for k in keys if k in meta})
    files: dict[str, FileDiff] = {}
    heads: dict[str, str] = {}
    for path, status, patch in split_diff((folder / "change.diff").read_text(encoding="utf-8")):
        files[path] = FileDiff.parse(path, patch, status=status)
        base = "" if status == "added" else upstream_text(meta["upstream"], path)
        if status != "removed":
            heads[path] = apply_patch(base, patch)
    return Case(
        meta["id"], meta["upstream"], meta["title"], meta["body"], label, Diff(files), heads
    )


def load_cases() -> list[Case]:
    return [load_case(folder) for folder in case_dirs()]


def upstream_text(project: str, path: str) -> str:
    file = CORPUS / "upstream" / project / (path + ".txt")
    if not file.is_file():
        raise FileNotFoundError(f"{path} is not in bench/review_corpus/upstream/{project}")
    return file.read_text(encoding="utf-8")


def split_diff(text: str) -> list[tuple[str, str, str]]:
    """(path, status, patch) per file of a `git diff`; the patch starts at the first `@@`,
    as GitHub's pull request files API gives it."""
    files = []
    for section in text.split("diff --git ")[1:]:
        head, _, hunks = section.partition("\n@@")
        lines = head.splitlines()
        old = next(line[4:] for line in lines if line.startswith("--- "))
        new = next(line[4:] for line in lines if line.startswith("+++ "))
        status = "added" if old == "/dev/null" else "removed" if new == "/dev/null" else "modified"
        path = (old if status == "removed" else new).removeprefix("a/").removeprefix("b/")
        files.append((path, status, "@@" + hunks))
    return files


def apply_patch(base: str, patch: str) -> str:
    """The new text: `patch`'s hunks applied to `base`, every context and removed line
    checked (a stale patch is an error, not a silently different file)."""
    old = base.splitlines(keepends=True)
    new: list[str] = []
    at = 0  # lines of `old` consumed
    for line in patch.splitlines(keepends=True):
        header = _HUNK.match(line)
        if header:
            start, count = int(header[1]), int(header[2] or 1)
            begin = start - 1 if count else start  # an empty old range names the line before
            if begin < at:
                raise ValueError(f"the hunks overlap or go backwards at line {start}")
            new += old[at:begin]
            at = begin
        elif line.startswith("\\"):  # "\ No newline at end of file"
            continue
        elif line.startswith(("-", " ")):
            if at >= len(old) or old[at] != line[1:]:
                raise ValueError(f"the patch does not apply at line {at + 1}: {line[1:]!r}")
            at += 1
            if line.startswith(" "):
                new.append(line[1:])
        elif line.startswith("+"):
            new.append(line[1:])
    return "".join(new + old[at:])


# === the stages ===========================================================================


async def static_stage(case: Case, ruff: RuffConfig | None = None) -> Result:
    """What the reviewer does between listing the files and posting: read the files the
    static checks want (the head's text), run them (with `ruff`, the repository's ruff
    configuration, when it has one), split off what the default configuration sends to the
    collapsed digest (static findings are certain, and the severity floor is `info`: none),
    and pin the rest onto the diff (nothing was posted before)."""
    contents = {path: case.heads[path] for path in static.wanted(case.diff)}
    notes: list[str] = []
    if ruff is None:
        found = await static.findings(case.diff, contents)
    else:
        checked = await static.check(case.diff, contents, ruff_config=ruff)
        found, notes = checked.findings, checked.notes
    config = ReviewConfig()  # the defaults: no .github/persais.yml
    found, minor = compose.split(found, config.severity_floor, config.min_confidence)
    return Result(case, found, compose.pin(found, case.diff, set(), minor), notes, minor)


def project_ruff(project: str) -> RuffConfig | None:
    """The project's own ruff configuration (its `pyproject.toml`, from the release's
    source distribution), read as the reviewer reads a repository's."""
    file = CORPUS / "upstream" / project / "pyproject.toml.txt"
    if not file.is_file():
        return None
    return ruff_config.parse("pyproject.toml", file.read_text(encoding="utf-8"))


def canned_answer(case: Case) -> str:
    """A scripted model's answer: one item on the case's first added line (kept, inline),
    one on a file the model was not shown (dropped)."""
    file = next(f for f in case.diff.files.values() if f.added)
    return json.dumps({
        "summary": "Scripted answer: proves the plumbing, judges nothing.",
        "findings": [
            {"path": file.path, "line": min(file.added), "severity": "info", "confidence": 0.9,
             "message": "Scripted finding on the first added line."},
            {"path": "not/in/this/diff.py", "line": 1, "severity": "warning", "confidence": 0.9,
             "message": "Scripted finding on a file the model was not shown."},
        ],
    })  # fmt: skip


@dataclass
class ModelPlumbing:
    calls: int = 0
    kept: int = 0
    dropped: int = 0
    inline: int = 0
    secrets_redacted: int = 0  # of the cases with a planted secret
    prompt_chars: list[int] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


async def model_stage(cases: list[Case], api: str, requests: list[dict[str, Any]]) -> ModelPlumbing:
    """`model.review()` per case against the scripted server; `requests` is the server's
    record of what it was sent."""
    model = ChatModel(api, "sk-corpus-scripted", "scripted")
    seen = ModelPlumbing()
    for case in cases:
        result = await model_review.review(model, case.title, case.body, case.diff)
        seen.calls += 1
        seen.kept += len(result.findings)
        seen.dropped += result.dropped
        seen.prompt_chars.append(result.prompt_chars)
        config = ReviewConfig()
        kept, minor = compose.split(result.findings, config.severity_floor, config.min_confidence)
        pinned = compose.pin(kept, case.diff, set(), minor)
        seen.inline += len(pinned.comments)
        sent = "\n".join(str(m.get("content")) for m in requests[-1]["messages"])
        expected = json.loads(canned_answer(case))["findings"][0]
        if [(f.path, f.line) for f in result.findings] != [(expected["path"], expected["line"])]:
            seen.problems.append(f"{case.id}: kept {[f.where() for f in result.findings]}")
        if result.dropped != 1 or len(pinned.comments) != 1:
            seen.problems.append(
                f"{case.id}: dropped {result.dropped}, inline {len(pinned.comments)}"
            )
        if case.title not in sent or "UNTRUSTED-" not in sent:
            seen.problems.append(f"{case.id}: the prompt lacks the title or the data fence")
        if case.label.rule == "secret":
            if "[redacted:" in sent and not redaction.find(sent):
                seen.secrets_redacted += 1
            else:
                seen.problems.append(f"{case.id}: the planted secret reached the model")
    return seen


# === the report ===========================================================================


def report_cases(results: list[Result]) -> None:
    print(f"{'case':<36} {'label':<8} {'findings':>8} {'inline':>6}  result")
    for r in results:
        label = r.case.label
        if label.defect:
            outcome = (
                ("found" + ("" if r.found_inline else " (summary only)")) if r.found else "MISSED"
            )
            outcome += "" if r.rule_agrees or not r.found else " (another rule)"
            if not label.reviewer_rules:
                outcome += " [outside Persais's rules]"
        else:
            outcome = "quiet" if not r.findings else "FALSE ALARM"
        extra = [f"{f.rule or f.source}@{f.line}" for f in r.false_alarms]
        print(f"{r.case.id:<36} {label.rule or 'clean':<8} {len(r.findings):>8} "
              f"{len(r.pinned.comments):>6}  {outcome}"
              + (f"; false alarms: {', '.join(extra)}" if extra else ""))  # fmt: skip
    print()


def report_static(title: str, results: list[Result]) -> None:
    defective = [r for r in results if r.case.label.defect]
    clean = [r for r in results if not r.case.label.defect]
    findings = sum(len(r.findings) for r in results)
    hits = sum(len(r.hits) for r in results)
    flagged = [r for r in results if r.findings]
    flagged_right = [r for r in flagged if r.found]
    within = [r for r in defective if r.case.label.reviewer_rules]
    print(f"static stage, {title}:")
    print(f"  precision, findings:      {ratio(hits, findings)}  ({hits} on a planted defect's "
          f"line ±{NEAR}, {findings - hits} false alarm(s))")  # fmt: skip
    print(f"  precision, pull requests: {ratio(len(flagged_right), len(flagged))}  "
          f"({len(flagged_right)} of {len(flagged)} flagged pull requests had their defect "
          "found)")  # fmt: skip
    print(f"  recall, all planted:      {ratio(sum(r.found for r in defective), len(defective))}")
    print(f"  recall, within Persais's rules (ruff {static.RUFF_RULES}, secrets): "
          f"{ratio(sum(r.found for r in within), len(within))}")  # fmt: skip
    inline = sum(r.found_inline for r in defective)
    print(f"  recall, inline:           {ratio(inline, len(defective))}  "
          "(the defect's comment sits on its line)")  # fmt: skip
    print(f"  inline comments per pull request: defective "
          f"{mean(r.pinned.comments for r in defective)}, clean "
          f"{mean(r.pinned.comments for r in clean)}")  # fmt: skip
    print(f"  findings per pull request: defective {mean(r.findings for r in defective)}, "
          f"clean {mean(r.findings for r in clean)}; off the diff (summary only): "
          f"{sum(len(r.pinned.loose) for r in results)}")  # fmt: skip
    digest = sum(len(r.digest) for r in results)
    if digest:
        print(f"  minor findings sent to the collapsed digest: {digest}")
    verdicts = Counter(compose.conclusion(r.findings) for r in clean)
    print(f"  check run on clean pull requests: {dict(sorted(verdicts.items()))}")
    rules = Counter(f.rule or f.source for r in results for f in r.false_alarms)
    print(f"  false alarms by rule: {dict(rules.most_common()) or 'none'}")
    notes = sorted({note for r in results for note in r.notes})
    for note in notes:
        print(f"  review note: {note}")
    print()


def report_model(results: list[Result], plumbing: ModelPlumbing) -> None:
    print("model stage (scripted OpenAI-compatible server, canned answer):")
    print(f"  {plumbing.calls} calls; {plumbing.kept} findings kept, {plumbing.dropped} dropped "
          f"(on a file the model was not shown), {plumbing.inline} inline; prompt "
          f"{statistics.median(plumbing.prompt_chars):,.0f} characters (median)")  # fmt: skip
    planted = sum(r.case.label.rule == "secret" for r in results)
    print(f"  planted secrets redacted before the model saw them: "
          f"{plumbing.secrets_redacted}/{planted}")  # fmt: skip
    print("  plumbing: " + ("ok" if not plumbing.problems else "; ".join(plumbing.problems)))
    print(
        "  quality: NOT MEASURED. A scripted answer proves the plumbing only; what a model "
        "finds, and how often it is wrong, needs a real model."
    )
    print()


def ratio(part: int, whole: int) -> str:
    return f"{part}/{whole} = {part / whole:.2f}" if whole else "n/a"


def mean(groups: Any) -> str:
    sizes = [len(g) for g in groups]
    return f"{statistics.mean(sizes):.2f}" if sizes else "n/a"


def main() -> None:
    parser = argparse.ArgumentParser(description="The static stage on the review corpus.")
    parser.add_argument("--no-model", action="store_true", help="skip the model plumbing run")
    opts = parser.parse_args()
    cases = load_cases()
    defective = sum(c.label.defect for c in cases)
    projects = ", ".join(sorted({c.upstream for c in cases}))
    print(f"Review corpus: {len(cases)} pull requests ({defective} with one planted defect, "
          f"{len(cases) - defective} clean), on {projects}")  # fmt: skip
    print()
    seconds: list[float] = []

    async def static_all(own_config: bool) -> list[Result]:
        results = []
        for case in cases:
            started = time.perf_counter()
            config = project_ruff(case.upstream) if own_config else None
            results.append(await static_stage(case, config))
            seconds.append(time.perf_counter() - started)
        return results

    results = asyncio.run(static_all(own_config=False))
    report_cases(results)
    report_static("Persais's rules (a repository without a ruff configuration)", results)
    timing = f"median {statistics.median(seconds):.3f} s, max {max(seconds):.3f} s"
    seconds.clear()
    own = asyncio.run(static_all(own_config=True))
    print("with each project's own ruff configuration (its pyproject.toml's [tool.ruff]):")
    report_cases([r for r in own if r.findings or r.case.label.defect])
    report_static("the projects' own ruff configuration", own)
    if not opts.no_model:
        from tests.support.scripted_llm import scripted_llm

        with scripted_llm([canned_answer(c) for c in cases]) as (api, llm):
            report_model(results, asyncio.run(model_stage(cases, api, llm.requests)))
    print(f"static stage time per pull request (one ruff process each): Persais's rules "
          f"{timing}; the projects' own median {statistics.median(seconds):.3f} s")  # fmt: skip


if __name__ == "__main__":
    main()
