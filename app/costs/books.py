"""The books of one service: an account per piece of work (a review, a job …) that records
each model call made inside it and refuses the next call once a budget is spent.

    async with costs.account("review", str(review_id)):
        ...  # every ChatModel call and Aider round in here is counted, and may be refused

A budget counts what is known: calls of unknown cost (no price configured, none reported)
are recorded with their tokens but add nothing, so set `LLM_PRICE_*` for budgets to bite.
Before each call the account checks the work's own budget (its spend so far, counting
earlier runs of a resumed job, plus what the call's prompt alone would cost at the
configured input price, at about 4 characters a token) and the day's budget (every call
since midnight UTC, by every worker).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from psycopg_pool import AsyncConnectionPool

from app.costs import ledger
from app.costs.ledger import Spend, dollars
from app.costs.price import Budgets, Price
from app.settings import Settings
from mechanic.metering import BudgetReached, Usage, metered

CHARS_PER_TOKEN = 4


class Costs:
    def __init__(self, pool: AsyncConnectionPool, price: Price, budgets: Budgets) -> None:
        self.pool = pool
        self.price = price
        self.budgets = budgets

    @classmethod
    def of(cls, settings: Settings, pool: AsyncConnectionPool) -> Costs:
        return cls(pool, Price.of(settings), Budgets.of(settings))

    @asynccontextmanager
    async def account(self, kind: str, subject: str) -> AsyncIterator[Account]:
        """Model calls made inside (and in tasks created inside) count for (kind, subject)."""
        if kind not in ledger.KINDS:
            raise ValueError(f"unknown kind of work {kind!r}")
        async with self.pool.connection() as conn:
            spent = await ledger.spent_on(conn, kind, subject)
        account = Account(self, kind, subject, spent)
        with metered(account):
            yield account

    async def today(self) -> Spend:
        async with self.pool.connection() as conn:
            return await ledger.spent_today(conn)

    async def status_line(self) -> str:
        """/status: "Model spend today: 3 model calls · … · $0.0123 (budget $1.00 a day)"."""
        line = f"Model spend today: {(await self.today()).describe()}"
        if self.budgets.day is not None:
            line += f" (budget {dollars(self.budgets.day)} a day)"
        if not self.price.known:
            line += " · no price configured (LLM_PRICE_INPUT_PER_MTOK, LLM_PRICE_OUTPUT_PER_MTOK)"
        return line


class Account:
    """One piece of work's meter (see `mechanic.metering.Meter`)."""

    def __init__(self, costs: Costs, kind: str, subject: str, spent: Spend) -> None:
        self.costs = costs
        self.kind = kind
        self.subject = subject
        self.spent = spent  # this work's, earlier runs included

    async def before(self, prompt_chars: int = 0) -> None:
        ahead = self.costs.price.of_tokens(-(-prompt_chars // CHARS_PER_TOKEN), 0) or 0.0
        cap = self.costs.budgets.for_kind(self.kind)
        if cap is not None:
            _check(cap, f"for this {self.kind}", self.spent.cost_usd, ahead, "spent")
        day = self.costs.budgets.day
        if day is not None:
            today = await self.costs.today()
            _check(day, "for today", today.cost_usd, ahead, "spent since midnight UTC")

    def describe(self) -> str:
        return self.spent.describe()

    async def after(self, usage: Usage) -> None:
        cost = self.costs.price.cost(usage)
        async with self.costs.pool.connection() as conn:
            await ledger.record(conn, self.kind, self.subject, usage, cost)
        self.spent = self.spent.plus(cost, usage.prompt_tokens, usage.completion_tokens)


def _check(cap: float, which: str, spent: float, ahead: float, since: str) -> None:
    if spent >= cap:
        raise BudgetReached(f"budget {dollars(cap)} {which} reached (${spent:.4f} {since})")
    if spent + ahead > cap:
        raise BudgetReached(
            f"budget {dollars(cap)} {which} reached: ${spent:.4f} {since}, and the next call's "
            f"prompt alone would cost about ${ahead:.4f}"
        )
