"""Cost that never surprises: each model call's tokens and price recorded per review and per
job, budgets that stop the work and say so, the Mechanic's quote before a costly job, and the
spend in /status, the pull request body and the console. Against the docs-written fake
GitHub, the scripted OpenAI-compatible model (it reports `usage` as OpenAI does: 1,000 prompt
tokens, a quarter of the answer's characters as completion tokens), the real aider-chat and
real Postgres."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from app.costs.books import Costs
from app.costs.price import Budgets, Price
from app.github.client import GitHubApp
from app.review.reviewer import Outcome, Reviewer, ReviewRequest
from app.settings import Settings, load_settings
from mechanic.aider import calls
from mechanic.llm import ChatModel
from mechanic.metering import BudgetReached
from tests.support.console import console_client, log_in
from tests.support.fake_github import APP_ID, FakeGitHub, app_key_pair, fake_github
from tests.support.mechanic import PLAN, REQUEST, echo_reply
from tests.support.pools import open_pool
from tests.support.processes import persais_env
from tests.support.scripted_llm import scripted_llm

PRIVATE, PUBLIC = app_key_pair()
REPO = "octo/widgets"
INSTALLATION = 77
# A long summary, so one review's answer costs a known, noticeable amount.
SUMMARY = "Looked at every changed line; " * 8
REVIEW_ANSWER = json.dumps({"summary": SUMMARY, "findings": []})


def completion_tokens(text: str) -> int:
    return len(text) // 4  # what the scripted model reports


def review_pulls(
    database: str, fake: FakeGitHub, url: str, numbers: list[int], costs_of: Any, replies: list[str]
) -> tuple[list[Outcome], Any]:
    """Review each pull request in turn with one reviewer whose books are `costs_of(pool)`."""
    settings = load_settings(
        None, GITHUB_APP_ID=APP_ID, GITHUB_PRIVATE_KEY=PRIVATE, GITHUB_API_URL=url
    )

    async def run(api: str) -> list[Outcome]:
        async with open_pool(database, max_size=6) as pool:
            model = ChatModel(api, "test-key", "scripted")
            reviewer = Reviewer(pool, GitHubApp(settings), model, costs=costs_of(pool))
            outcomes = []
            for number in numbers:
                head = fake.pulls[(REPO, number)].head_sha
                outcomes.append(
                    await reviewer.review(
                        ReviewRequest(INSTALLATION, REPO, number, head, "opened", f"d-{number}")
                    )
                )
            return outcomes

    with scripted_llm(replies) as (api, llm):
        return asyncio.run(run(api)), llm


def two_pulls(fake: FakeGitHub) -> list[int]:
    fake.add_repo(REPO, INSTALLATION, files={"README.md": "# widgets\n", "app/a.py": "x = 1\n"})
    fake.push(REPO, "one", {"app/a.py": "import os\nx = 1\n"})
    fake.push(REPO, "two", {"app/b.py": "import sys\ny = 2\n"})
    return [fake.open_pull(REPO, "one"), fake.open_pull(REPO, "two")]


def test_each_review_records_its_model_call_priced_as_configured_or_unknown(
    database: str, sql: Any
) -> None:
    with fake_github(PUBLIC) as (url, fake):
        first, second = two_pulls(fake)
        priced = lambda pool: Costs(pool, Price(2.0, 8.0), Budgets())  # noqa: E731
        (one,), _ = review_pulls(database, fake, url, [first], priced, [REVIEW_ANSWER])
        unpriced = lambda pool: Costs(pool, Price(), Budgets())  # noqa: E731
        (two,), _ = review_pulls(database, fake, url, [second], unpriced, [REVIEW_ANSWER])
    assert (one.status, two.status) == ("posted", "posted")
    rows = sql(
        "SELECT r.pull_number, c.kind, c.model, c.source, c.prompt_tokens,"
        " c.completion_tokens, c.cost_usd FROM model_costs c"
        " JOIN reviews r ON c.subject = r.id::text ORDER BY c.id"
    )
    completion = completion_tokens(REVIEW_ANSWER)
    cost = (1000 * 2.0 + completion * 8.0) / 1_000_000
    assert rows == [
        (first, "review", "scripted", "api", 1000, completion, Decimal(f"{cost:.6f}")),
        (second, "review", "scripted", "api", 1000, completion, None),  # unknown, not $0
    ]

    async def today() -> str:
        async with open_pool(database) as pool:
            return await Costs(pool, Price(), Budgets(day=5.0)).status_line()

    line = asyncio.run(today())
    assert line.startswith(f"Model spend today: 2 model calls · 2.0k tokens in, {completion * 2}")
    assert f"${cost:.4f} + 1 call of unknown cost (budget $5.00 a day)" in line
    assert "no price configured (LLM_PRICE_INPUT_PER_MTOK" in line


def test_past_the_day_budget_the_next_review_is_static_only_and_says_why(
    database: str, sql: Any
) -> None:
    # Input is free and output dear, so the first review's prompt fits the budget and its
    # answer spends it all.
    with fake_github(PUBLIC) as (url, fake):
        numbers = two_pulls(fake)
        books = lambda pool: Costs(pool, Price(0.0, 1000.0), Budgets(day=0.05))  # noqa: E731
        outcomes, llm = review_pulls(
            database, fake, url, numbers, books, [REVIEW_ANSWER, REVIEW_ANSWER]
        )
        reviews = list(fake.reviews)
    spent = completion_tokens(REVIEW_ANSWER) * 1000.0 / 1_000_000
    assert spent >= 0.05
    assert [o.status for o in outcomes] == ["posted", "posted"]
    assert len(llm.requests) == 1  # the second review never asked the model
    first, second = reviews
    assert SUMMARY.strip() in first["body"]
    note = (
        f"The model review stopped: budget $0.05 for today reached (${spent:.4f} spent since"
        " midnight UTC); static checks only."
    )
    assert note in second["body"]
    # The static findings stand: the unused import is on its line.
    assert [(c["path"], c["line"]) for c in second["comments"]] == [("app/b.py", 1)]
    assert "F401" in second["comments"][0]["body"]
    assert sql("SELECT count(*) FROM model_costs") == [(1,)]


def test_aiders_usage_lines_are_read_as_it_prints_them() -> None:
    """aider/coders/base_coder.py: a Cost part only when Aider knows a price (never $0 for
    unknown), cache counts between "sent" and "received", and the Cost part on its own line
    when both cache counts are there."""
    transcript = (
        "Applied edit to dynamic/agents/echo/agent.py\n"
        "Tokens: 2.1k sent, 300 received. Cost: $0.01 message, $0.01 session.\n"
        "Tokens: 12k sent, 1.0k cache write, 10k cache hit, 52 received.\n"
        "Cost: $0.0042 message, $0.01 session.\n"
        "Tokens: 931 sent, 20 received.\n"
    )
    used = [(u.prompt_tokens, u.completion_tokens, u.cost_usd) for u in calls(transcript, "m")]
    assert used == [(2100, 300, 0.01), (12000, 52, 0.0042), (931, 20, None)]


def test_a_call_whose_prompt_alone_would_pass_the_budget_is_never_sent(
    database: str, sql: Any
) -> None:
    async def ask(api: str) -> str:
        async with open_pool(database) as pool:
            books = Costs(pool, Price(10.0, 10.0), Budgets(review=0.001))
            async with books.account("review", "r-1"):
                # 4,000 characters: about 1,000 tokens, $0.01 at $10 a million > $0.001.
                return await ChatModel(api, "k", "scripted").complete("x" * 4000)

    with scripted_llm(["never sent"]) as (api, llm), pytest.raises(BudgetReached) as refused:
        asyncio.run(ask(api))
    assert llm.requests == []
    assert str(refused.value) == (
        "budget $0.0010 for this review reached: $0.0000 spent, and the next call's prompt alone"
        " would cost about $0.0100"
    )
    assert sql("SELECT count(*) FROM model_costs") == [(0,)]


def test_the_jobs_page_shows_each_jobs_model_spend(
    settings: Settings, database: str, sql: Any
) -> None:
    for job in ("priced", "mixed", "old"):
        sql("INSERT INTO jobs (id, conversation, requested_by, request, status, cost)"
            " VALUES (%s, 'tg:1', 'tg:1', 'Create an agent Echo', 'failed', 0.5)", job)  # fmt: skip
    rows = [("priced", 1000, 40, 0.0123), ("mixed", 1000, 40, 0.0042), ("mixed", 2000, 60, None)]
    for subject, prompt, completion, cost in rows:
        sql("INSERT INTO model_costs (kind, subject, model, prompt_tokens, completion_tokens,"
            " cost_usd) VALUES ('job', %s, 'scripted', %s, %s, %s)",
            subject, prompt, completion, cost)  # fmt: skip
    with console_client(settings, database) as client:
        log_in(client, database, "tg:9", "reader")
        listing = client.get("/console/jobs").text
        mixed = client.get("/console/jobs/mixed").text
    cells = dict(re.findall(r'<code>(\w+)</code></a></th>.*?job-minor"[^>]*>([^<]*)</td>\s*<td>',
                            listing, re.S))  # fmt: skip
    assert cells == {
        "priced": "$0.0123", "mixed": "$0.0042 + 1 call of unknown cost",
        "old": "$0.5000",  # before the ledger: Aider's own figure, as it was shown
    }  # fmt: skip
    assert "2 model calls · 3.0k tokens in, 100 out · $0.0042 + 1 call of unknown cost" in mixed


# --- Mechanic jobs, from the chat (`persais chat`: the real worker path and the terminal) ---

PLAN_REPLY = json.dumps(PLAN)
ECHO_REPLY = echo_reply('f"Echo: {message.text}"')
# Input cheap, output dear: the planner's prompt is cheap to send, and its answer spends the
# job's budget, so the job stops after planning, before Aider's first round.
PRICES = {"LLM_PRICE_INPUT_PER_MTOK": "1", "LLM_PRICE_OUTPUT_PER_MTOK": "400"}


def chat(env: dict[str, str], lines: list[str]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "app", "chat", "--name", "ada"],
        input="\n".join(lines) + "\n", env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def call_cost(completion: str) -> float:
    return (1000 * 1 + completion_tokens(completion) * 400) / 1_000_000


@pytest.mark.slow
def test_a_job_budget_stops_the_mechanic_mid_way_and_the_person_is_told(
    tmp_path: Path, database: str, sql: Any
) -> None:
    home = tmp_path / "home"
    with scripted_llm([PLAN_REPLY, ECHO_REPLY]) as (base, llm):
        env = persais_env(home, database, LLM_API_BASE=base, LLM_API_KEY="sk-budget",
                          LLM_MODEL="scripted", PERSAIS_BUDGET_JOB_USD="0.01",
                          **PRICES)  # fmt: skip
        out = chat(env, ["/mechanic", REQUEST])
    spent = call_cost(PLAN_REPLY)
    assert spent >= 0.01
    ((job, status, message, pr),) = sql("SELECT id, status, message, pr_number FROM jobs")
    # Planned and scaffolded; stopped before Aider's first round: the model was asked once.
    assert len(llm.requests) == 1
    assert (status, pr) == ("failed", None)
    told = (
        f"✗ Job {job} failed: Stopped before the next model call: budget $0.01 for this job"
        f" reached (${spent:.4f} spent); spent: 1 model call · 1.0k tokens in,"
        f" {completion_tokens(PLAN_REPLY)} out · ${spent:.4f}. Nothing was published."
    )
    assert told in out, out
    assert message in told
    for stage in ("✓ plan", "✓ scaffold", "✗ code"):
        assert stage in out, out
    assert "↻ stopped: budget $0.01 for this job reached" in out
    assert sql("SELECT kind, subject, source, prompt_tokens FROM model_costs") == [
        ("job", job, "api", 1000)
    ]
    assert not (home / "jobs" / job / "worktree").exists()
    bare = home / "forge" / "persais.git"
    branches = subprocess.run(["git", "-C", str(bare), "branch", "--list", "mechanic/*"],
                              capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert branches == ""


@pytest.mark.slow
def test_above_the_threshold_the_mechanic_quotes_first_cancel_stops_start_runs(
    tmp_path: Path, database: str, sql: Any
) -> None:
    home = tmp_path / "home"
    with scripted_llm([PLAN_REPLY, ECHO_REPLY]) as (base, llm):
        env = persais_env(home, database, LLM_API_BASE=base, LLM_API_KEY="sk-quote",
                          LLM_MODEL="scripted", PERSAIS_QUOTE_ABOVE_USD="0.50",
                          **PRICES)  # fmt: skip
        # Before any job: 1 planning call and 4 Aider rounds, at 6,000 tokens in and 1,500
        # out each: 5 * (0.006 + 0.6) = $3.03.
        cancelled = chat(env, ["/mechanic", REQUEST, "2"])
        ((first,),) = sql("SELECT id FROM jobs")
        assert f"≈ $3.03, up to 5 model calls — start job {first}?" in cancelled, cancelled
        assert "[1] Start  [2] Cancel" in cancelled
        assert f"Cancelled job {first}; no model was called." in cancelled
        assert llm.requests == []
        assert sql("SELECT status, message FROM jobs") == [("failed", "declined")]

        started = chat(env, ["/mechanic " + REQUEST, "1"])
        assert "[1] Start  [2] Cancel" in started
        assert "✅ Pull request #1 is open" in started, started
        status = chat(env, ["/status"])
    (second,) = [j for (j,) in sql("SELECT id FROM jobs ORDER BY created_at")][1:]
    assert f"On it: job {second}." in started
    assert len(llm.requests) == 2  # the planner, then Aider
    rows = sql(
        "SELECT subject, source, prompt_tokens, completion_tokens, cost_usd FROM model_costs"
        " ORDER BY id"
    )
    plan, aider = call_cost(PLAN_REPLY), call_cost(ECHO_REPLY)
    assert rows == [
        (second, "api", 1000, completion_tokens(PLAN_REPLY), Decimal(f"{plan:.6f}")),
        (second, "aider", 1000, completion_tokens(ECHO_REPLY), Decimal(f"{aider:.6f}")),
    ]
    total = f"${plan + aider:.4f}"
    spend = re.escape("2 model calls · 2.0k tokens in, ") + r"\d+ out · " + re.escape(total)
    assert re.search(r"Spent: " + spend, started), started  # the pull request's card
    assert re.search(r"Model spend today: " + spend, status), status
    ((body,),) = sql("SELECT body FROM pull_requests")
    assert re.search(r"## Spend\n\n" + spend + r" \(planning and Aider", body), body
