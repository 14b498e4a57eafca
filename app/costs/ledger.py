"""The `model_costs` rows: one per model call, and the sums the budgets, /status, the
pull request body and the console read."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from psycopg import AsyncConnection

if TYPE_CHECKING:  # the web process (the console) reads the ledger without the Mechanic
    from mechanic.metering import Usage


KINDS = ("review", "describe", "job", "ask")
_SUMS = (
    "SELECT count(*), coalesce(sum(prompt_tokens), 0), coalesce(sum(completion_tokens), 0),"
    " coalesce(sum(cost_usd), 0), count(*) FILTER (WHERE cost_usd IS NULL) FROM model_costs"
)
# Midnight UTC: the day a day budget counts.
_TODAY = "at >= date_trunc('day', now(), 'UTC')"


@dataclass(frozen=True)
class Spend:
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0  # of the calls whose cost is known
    unpriced: int = 0  # calls whose cost is unknown (no price configured or reported)

    def plus(self, cost: float | None, prompt: int | None, completion: int | None) -> Spend:
        return Spend(
            self.calls + 1, self.prompt_tokens + (prompt or 0),
            self.completion_tokens + (completion or 0), self.cost_usd + (cost or 0.0),
            self.unpriced + (cost is None),
        )  # fmt: skip

    def money(self) -> str:
        """ "$0.0123", "$0.0123 + 2 calls of unknown cost", or "cost unknown"."""
        if self.calls and self.unpriced == self.calls:
            return "cost unknown"
        known = f"${self.cost_usd:.4f}"
        if self.unpriced:
            return f"{known} + {self.unpriced} call{'s' * (self.unpriced > 1)} of unknown cost"
        return known

    def describe(self) -> str:
        """One line for people: "3 model calls · 12.3k tokens in, 2.1k out · $0.0123"."""
        if not self.calls:
            return "no model calls"
        calls = f"{self.calls} model call{'s' * (self.calls > 1)}"
        tokens = f"{_tokens(self.prompt_tokens)} tokens in, {_tokens(self.completion_tokens)} out"
        return f"{calls} · {tokens} · {self.money()}"


def dollars(amount: float) -> str:
    """ "$1.50", "$0.12"; under a cent, four places ("$0.0042"): a small sum is not $0.00."""
    return f"${amount:.2f}" if amount >= 0.01 or amount == 0 else f"${amount:.4f}"


def _tokens(count: int) -> str:
    return f"{count / 1000:.1f}k" if count >= 1000 else str(count)


def _spend(row: Any) -> Spend:
    calls, prompt, completion, cost, unpriced = row
    return Spend(int(calls), int(prompt), int(completion), float(Decimal(cost)), int(unpriced))


async def record(
    conn: AsyncConnection[Any], kind: str, subject: str, usage: Usage, cost: float | None
) -> None:
    await conn.execute(
        "INSERT INTO model_costs (kind, subject, model, source, prompt_tokens,"
        " completion_tokens, cost_usd) VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (kind, subject, usage.model[:200], usage.source, usage.prompt_tokens,
         usage.completion_tokens, cost),
    )  # fmt: skip


async def spent_on(conn: AsyncConnection[Any], kind: str, subject: str) -> Spend:
    cur = await conn.execute(_SUMS + " WHERE kind = %s AND subject = %s", (kind, subject))
    return _spend(await cur.fetchone())


async def spent_today(conn: AsyncConnection[Any]) -> Spend:
    cur = await conn.execute(_SUMS + " WHERE " + _TODAY)
    return _spend(await cur.fetchone())


async def typical_call(conn: AsyncConnection[Any], kind: str, last: int = 50) -> tuple[int, int]:
    """The average (prompt, completion) tokens of the last `last` calls of this kind that
    reported them, or (0, 0) when there were none."""
    cur = await conn.execute(
        "SELECT coalesce(avg(prompt_tokens), 0), coalesce(avg(completion_tokens), 0) FROM"
        " (SELECT prompt_tokens, completion_tokens FROM model_costs WHERE kind = %s"
        " AND prompt_tokens IS NOT NULL AND completion_tokens IS NOT NULL"
        " ORDER BY at DESC LIMIT %s) recent",
        (kind, last),
    )
    row = await cur.fetchone()
    assert row is not None
    return round(row[0]), round(row[1])
