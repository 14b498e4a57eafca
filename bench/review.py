"""Review benchmark: one ~2,000-changed-line pull request reviewed against the local fake
GitHub, with an instant model.

    .venv/bin/python bench/review.py [--runs 3]

The pull request: four Python files modified in several hunks each (functions edited,
inserted and removed), four added (one of them an agent under `dynamic/agents/` with a
policy violation, and its manifest), real ruff findings (unused imports, an undefined name,
an unused variable, a mutable default) and a markdown page. The model is the scripted
OpenAI-compatible server (`tests/support/scripted_llm.py`), answering at once with a small
valid review pinned to real diff lines.

Each run reviews a fresh pull request (a new branch and number, the same changes) with a
fresh `GitHubApp` (so its installation token is fetched again) and pool, on one embedded
Postgres. Per run: the static stage, the model stage and the whole review (`outcome.timings`),
the wall time around `Reviewer.review`, the GitHub API calls it made (from the fake's log),
the reviews posted and the check-run writes, the inline comments. Targets (issue 5): static
stage < 3 s, whole review < 5 s, exactly one review and two check-run writes. A missed
target is printed, not raised: this is a measurement.

The fake GitHub serves from a thread of this process and runs `git` for every request, so
its own work shares this process's interpreter with the reviewer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


from app.db.database import connect, migrate_to_latest  # noqa: E402
from app.github.client import GitHubApp  # noqa: E402
from app.review import reviewer as reviewer_module  # noqa: E402
from app.review import static  # noqa: E402
from app.review.pull import PullOnGitHub  # noqa: E402
from app.review.reviewer import Outcome, Reviewer, ReviewRequest  # noqa: E402
from app.settings import load_settings  # noqa: E402
from bench.stopwatch import Stopwatch  # noqa: E402
from mechanic.llm import ChatModel  # noqa: E402
from tests.support.fake_github import APP_ID, FakeGitHub, app_key_pair, fake_github  # noqa: E402
from tests.support.pools import open_pool  # noqa: E402
from tests.support.scripted_llm import scripted_llm  # noqa: E402

REPO = "octo/widgets"
INSTALLATION = 77
TARGET_STATIC_S = 3.0
TARGET_TOTAL_S = 5.0
WRITES = ("POST", "PATCH", "PUT", "DELETE")

# === the pull request =====================================================================

HEADER = '''"""{doc}"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
{extra}
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Record:
    id: int
    name: str
    score: float
'''


def _load(i: int, v: int) -> str:
    limit = 100 + 10 * i + 50 * v
    level = "warning" if v == 0 else "info"
    guard = "    if not rows:\n        return records\n" if v else ""
    return f'''

def load_records_{i}(rows: list[dict[str, Any]], limit: int = {limit}) -> list[Record]:
    """Read up to `limit` records of kind {i} from raw rows, skipping the broken ones."""
    records: list[Record] = []
{guard}    for row in rows[:limit]:
        try:
            records.append(Record(int(row["id"]), str(row["name"]), float(row["score"])))
        except (KeyError, ValueError) as exc:
            log.{level}("record %s of kind {i} skipped: %s", row.get("id"), exc)
    return records
'''


def _counter(i: int, v: int) -> str:
    window = 30 + i + 15 * v
    keep = "at - t < self.window" if v == 0 else "0 <= at - t < self.window"
    cap = "" if v == 0 else "        del self.events[: max(0, len(self.events) - self.cap)]\n"
    init_cap = "" if v == 0 else "        self.cap = 10_000\n"
    return f'''

class Counter{i}:
    """Counts events of kind {i} in a sliding window of {window} seconds."""

    def __init__(self, window: float = {window}.0) -> None:
        self.window = window
{init_cap}        self.events: list[float] = []

    def add(self, at: float) -> int:
        self.events = [t for t in self.events if {keep}]
        self.events.append(at)
{cap}        return len(self.events)

    def rate(self) -> float:
        return len(self.events) / self.window
'''


def _summary(i: int, v: int) -> str:
    digits = 2 + v
    empty = (
        '{"mean": 0.0, "low": 0.0, "high": 0.0}'
        if v == 0
        else 'dict.fromkeys(("mean", "low", "high"), 0.0)'
    )
    return f'''

def summarise_{i}(records: list[Record]) -> dict[str, float]:
    """Mean, lowest and highest score of the records of kind {i}."""
    if not records:
        return {empty}
    scores = [r.score for r in records]
    return {{
        "mean": round(sum(scores) / len(scores), {digits}),
        "low": min(scores),
        "high": max(scores),
    }}
'''


TEMPLATES: list[Callable[[int, int], str]] = [_load, _counter, _summary]


def block(i: int, v: int = 0) -> str:
    return TEMPLATES[i % len(TEMPLATES)](i, v)


@dataclass
class Module:
    """A Python file as a list of blocks: the base, and the head with some blocks edited,
    some inserted and some removed."""

    doc: str
    first: int  # block numbers are global, so names never clash across files
    count: int
    edited: set[int] = field(default_factory=set)  # indices into the base blocks
    removed: set[int] = field(default_factory=set)
    inserted: dict[int, int] = field(default_factory=dict)  # after base index -> how many
    extra_import: str = ""  # an import added at the head (unused: F401)
    tail: str = ""  # text appended at the head

    def base(self) -> str:
        body = "".join(block(self.first + k) for k in range(self.count))
        return HEADER.format(doc=self.doc, extra="") + body

    def head(self) -> str:
        extra = f"{self.extra_import}\n" if self.extra_import else ""
        parts = [HEADER.format(doc=self.doc, extra=extra)]
        fresh = self.first + self.count
        for k in range(self.count):
            if k not in self.removed:
                parts.append(block(self.first + k, 1 if k in self.edited else 0))
            for _ in range(self.inserted.get(k, 0)):
                parts.append(block(fresh))
                fresh += 1
        return "".join(parts) + self.tail


def added_module(doc: str, first: int, count: int, extra: str = "", tail: str = "") -> str:
    body = "".join(block(first + k) for k in range(count))
    return HEADER.format(doc=doc, extra=extra) + body + tail


UNDEFINED = '''

def ranked(records: list[Record]) -> list[Record]:
    """The records, best first, their scores normalised."""
    ordered = sorted(records, key=lambda r: r.score, reverse=True)
    return [Record(r.id, r.name, normalise_score(r.score)) for r in ordered]
'''

UNUSED_VARIABLE = '''

def pick(records: list[Record], name: str) -> Record | None:
    """The first record with this name."""
    matches = [r for r in records if r.name == name]
    count = len(matches)
    return matches[0] if matches else None
'''

MUTABLE_DEFAULT = '''

def tagged(record: Record, tags: list[str] = []) -> list[str]:
    """The record's tags, with its own name first."""
    tags.insert(0, record.name)
    return tags
'''

AGENT = '''"""Weather: answers "weather <city>" with the forecast from the local station script."""

from __future__ import annotations

import subprocess

from app.agents.base import Agent, Message


class Weather(Agent):
    name = "weather"

    async def handle(self, message: Message) -> str:
        city = message.text.removeprefix("weather").strip() or "Lisbon"
        return self.forecast(city)

    def forecast(self, city: str) -> str:
        done = subprocess.run(["station", "--city", city], capture_output=True, text=True)
        return done.stdout.strip() or f"No forecast for {city}."
'''

AGENT_TOML = 'name = "weather"\ndescription = "Forecasts from the local station"\n'


def test_module(count: int) -> str:
    parts = [
        '"""Tests for the reports."""\n\nfrom __future__ import annotations\n\n'
        "import pytest\n\nfrom app.reports import Record, ranked\n"
    ]
    for i in range(count):
        parts.append(f"""

def test_records_{i}_are_ranked_by_score() -> None:
    records = [Record({i}, "a", 1.0), Record({i + 1}, "b", {i + 2}.5)]
    assert [r.id for r in ranked(records)] == [{i + 1}, {i}]


def test_record_{i}_rejects_a_bad_score() -> None:
    with pytest.raises(ValueError):
        float("score-{i}")
""")
    return "".join(parts)


def markdown(sections: int) -> str:
    parts = ["# Reports\n\nThe reports module reads raw rows, ranks and summarises them.\n"]
    for i in range(sections):
        parts.append(
            f"\n## Kind {i}\n\nRecords of kind {i} are read by `load_records_{i}`, at most "
            f"{100 + 10 * i} at a time.\nBroken rows are skipped and logged.\n\n"
            f"- window: {30 + i} seconds\n- rounding: 2 digits\n"
        )
    return "".join(parts)


MODULES = {
    "app/core.py": Module(
        "Core records and their loading.", 0, 40, edited={3, 7, 11, 18, 26, 31, 35},
        removed={4, 15, 33}, inserted={9: 4, 22: 4, 37: 4}, extra_import="import sys",
        tail=UNUSED_VARIABLE,
    ),
    "app/models.py": Module(
        "Models of the widgets.", 100, 32, edited={1, 5, 9, 14, 20, 25, 29}, removed={12, 27},
        inserted={3: 3, 17: 4, 30: 3},
    ),
    "app/handlers.py": Module(
        "Request handlers.", 200, 26, edited={0, 6, 13, 19, 23}, removed={9, 10},
        inserted={4: 3, 15: 2, 21: 2}, tail=MUTABLE_DEFAULT,
    ),
    "app/utils.py": Module(
        "Small helpers.", 300, 20, edited={3, 8, 12, 17}, removed={5, 6, 7}, inserted={14: 3},
    ),
}  # fmt: skip


def pull_request() -> tuple[dict[str, str | bytes], dict[str, str | bytes | None]]:
    """(the base branch's files, the changes the pull request makes)."""
    base: dict[str, str | bytes] = {"README.md": "# widgets\n", "pyproject.toml": "[project]\n"}
    changes: dict[str, str | bytes | None] = {}
    for path, module in MODULES.items():
        base[path] = module.base()
        changes[path] = module.head()
    changes["app/reports.py"] = added_module(
        "Reports: ranking and summaries.", 400, 44, extra="import os\nimport re\n",
        tail=UNDEFINED,
    )  # fmt: skip
    changes["app/scheduler.py"] = added_module("When reports run.", 500, 28)
    changes["dynamic/agents/weather/agent.py"] = AGENT
    changes["dynamic/agents/weather/agent.toml"] = AGENT_TOML
    changes["tests/test_reports.py"] = test_module(23)
    changes["docs/reports.md"] = markdown(12)
    return base, changes


def line_of(text: str, needle: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if needle in line)


def model_answer(changes: dict[str, str | bytes | None]) -> str:
    """A small valid review pinned to lines the pull request adds, in files the model is
    shown (the prompt holds the first 60,000 characters of the diff: here core, handlers,
    models, scheduler and the agent; reports, utils, the tests and the page are left out)."""
    core, scheduler, agent = (
        str(changes[p])
        for p in ("app/core.py", "app/scheduler.py", "dynamic/agents/weather/agent.py")
    )
    return json.dumps({
        "summary": "Adds reports and a weather agent; a few loose ends.",
        "findings": [
            {"path": "app/core.py", "line": line_of(core, "if not rows:"), "severity": "info",
             "message": "An early return for empty input: the loop already handles it."},
            {"path": "app/scheduler.py", "line": line_of(scheduler, "if at - t < self.window"),
             "severity": "warning", "message": "A clock going back keeps stale events."},
            {"path": "dynamic/agents/weather/agent.py",
             "line": line_of(agent, "subprocess.run("), "severity": "error",
             "message": "No timeout: a stuck station script blocks the agent forever.",
             "replacement": '        done = subprocess.run(["station", "--city", city], '
                            "capture_output=True, text=True, timeout=10)"},
        ],
    })  # fmt: skip


# === one run ==============================================================================


def endpoint(method: str, path: str) -> str:
    """`GET /repos/octo/widgets/contents/app/core.py` -> `GET contents/{path}`."""
    path = path.removeprefix(f"/repos/{REPO}/")
    if path.startswith("contents/"):
        return f"{method} contents/{{path}}"
    numbered = re.sub(r"/[0-9]+", "/{n}", path)
    return f"{method} {numbered}"


async def review_one(
    conninfo: str, url: str, private: str, api: str, fake: FakeGitHub, number: int, run: int
) -> dict[str, Any]:
    watch = Stopwatch()
    watch.wrap(PullOnGitHub, "contents", "fetch contents")
    watch.wrap(PullOnGitHub, "files", "list files")
    watch.wrap(reviewer_module._Run, "_config", "read the config")
    watch.wrap(PullOnGitHub, "start_check_run", "check run: create")
    watch.wrap(PullOnGitHub, "post_review", "post the review")
    watch.wrap(reviewer_module._Run, "_check_run_completed", "check run: conclude")
    watch.wrap(static, "_ruff", "ruff")
    watch.wrap_sync(static, "_policy", "policy")
    settings = load_settings(
        None, GITHUB_APP_ID=APP_ID, GITHUB_PRIVATE_KEY=private, GITHUB_API_URL=url
    )
    try:
        async with open_pool(conninfo, max_size=6) as pool:
            reviewer = Reviewer(pool, GitHubApp(settings), ChatModel(api, "sk-bench", "scripted"))
            head = fake.pulls[(REPO, number)].head_sha
            request = ReviewRequest(INSTALLATION, REPO, number, head, "opened", f"bench-{run}")
            calls_before, reviews_before = len(fake.calls), len(fake.reviews)
            t = time.perf_counter()
            outcome: Outcome = await reviewer.review(request)
            wall = time.perf_counter() - t
    finally:
        watch.restore()
    if outcome.status != "posted":
        raise RuntimeError(f"run {run}: the review was not posted: {outcome}")
    calls = list(fake.calls)[calls_before:]
    reviews = fake.reviews[reviews_before:]
    auth = [c for c in calls if c.path.endswith("/access_tokens")]
    api_calls = [c for c in calls if c not in auth]
    return {
        "static_s": outcome.timings["static"],
        "model_s": outcome.timings["model"],
        "total_s": outcome.timings["total"],
        "wall_s": wall,
        "reads": sum(c.method == "GET" for c in api_calls),
        "writes": sum(c.method in WRITES for c in api_calls),
        "token": len(auth),
        "reviews": len(reviews),
        "check_run_writes": sum(
            c.method in ("POST", "PATCH") and "/check-runs" in c.path for c in api_calls
        ),
        "inline": len(reviews[0]["comments"]) if reviews else 0,
        "findings": len(outcome.findings),
        "conclusion": outcome.conclusion,
        "endpoints": Counter(endpoint(c.method, c.path) for c in calls),
        "inside": dict(watch.seconds),
    }


# === report ===============================================================================


def mark(ok: bool) -> str:
    return "✅" if ok else "❌"


def report(runs: list[dict[str, Any]], files: list[dict[str, Any]], prompt_chars: int) -> None:
    added = sum(f["additions"] for f in files)
    deleted = sum(f["deletions"] for f in files)
    python = [f for f in files if f["filename"].endswith(".py")]
    print(
        f"pull request: {len(files)} files ({len(python)} Python), {added + deleted} changed "
        f"lines (+{added} -{deleted}); the model's prompt: {prompt_chars:,} characters"
    )
    for f in files:
        print(f"  {f['status']:>8} +{f['additions']:<4} -{f['deletions']:<4} {f['filename']}")
    print()
    head = ("run", "static s", "model s", "total s", "wall s", "reads", "writes", "token",
            "reviews", "check writes", "inline")  # fmt: skip
    keys = ("static_s", "model_s", "total_s", "wall_s", "reads", "writes", "token", "reviews",
            "check_run_writes", "inline")  # fmt: skip
    rows = [[str(n + 1), *(_cell(r[k]) for k in keys)] for n, r in enumerate(runs)]
    medians = {k: statistics.median(r[k] for r in runs) for k in keys}
    rows.append(["median", *(_cell(medians[k]) for k in keys)])
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(head)]
    print("  ".join(h.rjust(w) for h, w in zip(head, widths, strict=True)))
    for row in rows:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))
    print()

    print("API calls per review (median), by endpoint:")
    names = sorted({e for r in runs for e in r["endpoints"]})
    for name in names:
        counts = [r["endpoints"].get(name, 0) for r in runs]
        print(f"  {statistics.median(counts):>4g}  {name}   (runs: {counts})")
    print()
    print("time inside the steps (median s), from wrappers around them:")
    labels = sorted({k for r in runs for k in r["inside"]})
    for label in labels:
        values = [r["inside"].get(label, 0.0) for r in runs]
        print(f"  {statistics.median(values):7.3f}  {label}   (runs: "
              f"{', '.join(f'{v:.3f}' for v in values)})")  # fmt: skip
    print(f"  conclusion: {runs[0]['conclusion']}, findings: {runs[0]['findings']}")
    print()

    reviews_ok = all(r["reviews"] == 1 for r in runs)
    checks_ok = all(r["check_run_writes"] == 2 for r in runs)
    print("targets (issue 5):")
    print(f"  {mark(medians['static_s'] < TARGET_STATIC_S)} static stage < {TARGET_STATIC_S:g} s:"
          f" median {medians['static_s']:.3f} s")  # fmt: skip
    print(f"  {mark(medians['total_s'] < TARGET_TOTAL_S)} whole review < {TARGET_TOTAL_S:g} s "
          f"(model instant): median {medians['total_s']:.3f} s "
          f"(wall around review(): {medians['wall_s']:.3f} s)")  # fmt: skip
    print(f"  {mark(reviews_ok)} exactly one review posted: "
          f"{[r['reviews'] for r in runs]}")  # fmt: skip
    print(f"  {mark(checks_ok)} exactly two check-run writes (POST + PATCH): "
          f"{[r['check_run_writes'] for r in runs]}")  # fmt: skip


def _cell(value: float) -> str:
    return f"{value:.3f}" if isinstance(value, float) and not value.is_integer() else f"{value:g}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    opts = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="persais-review-bench-"))
    settings = load_settings(None, PERSAIS_HOME=str(work / "home"), PERSAIS_LOG_LEVEL="WARNING")
    db = connect(settings)
    migrate_to_latest(db)
    private, public = app_key_pair()
    base, changes = pull_request()
    answer = model_answer(changes)
    runs: list[dict[str, Any]] = []
    try:
        with (
            fake_github(public) as (url, fake),
            scripted_llm([answer] * opts.runs) as (api, llm),
        ):
            fake.add_repo(REPO, INSTALLATION, files=base)
            for n in range(opts.runs):
                fake.push(REPO, f"feature-{n}", changes, message=f"Reports, run {n + 1}")
                number = fake.open_pull(REPO, f"feature-{n}", title="Reports and a weather agent")
                runs.append(
                    asyncio.run(review_one(db.conninfo, url, private, api, fake, number, n))
                )
            repo, pull = fake.repos[REPO], fake.pulls[(REPO, number)]
            files = [
                {"filename": c.filename, "status": c.status, "additions": c.additions,
                 "deletions": c.deletions}
                for c in fake._files(repo, pull)
            ]  # fmt: skip
            prompt_chars = sum(len(m["content"]) for m in llm.requests[0]["messages"])
    finally:
        db.release()
    report(runs, files, prompt_chars)


if __name__ == "__main__":
    main()
