"""The Mechanic's estimate before a job runs, shown when it is above
`PERSAIS_QUOTE_ABOVE_USD`: "≈ $0.12, up to 5 model calls".

How it is computed: the calls a job can make — one to plan, then one Aider round to code and
one per repair round (`mechanic.job.REPAIR_ROUNDS`, 3) — times the cost of a typical call:
the average tokens in and out of the last 50 Mechanic calls recorded (`model_costs`), or
6,000 in and 1,500 out before there are any, at the configured price. It is an upper bound in
calls, not in tokens: a round that has more to read costs more, and Aider may ask the model
again within a round when it cannot apply an answer (its reflections), which the budgets
(`PERSAIS_BUDGET_JOB_USD`) still count and stop. Without a price there is no estimate, and
no quote.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.costs import ledger
from app.costs.books import Costs
from app.costs.ledger import dollars
from mechanic.job import REPAIR_ROUNDS

FIRST_CALL = (6_000, 1_500)  # tokens in, out: a job's call before any was recorded


@dataclass(frozen=True)
class Quote:
    cost_usd: float
    calls: int
    per_call: tuple[int, int]  # tokens in, out

    def text(self) -> str:
        return f"≈ {dollars(self.cost_usd)}, up to {self.calls} model calls"


async def estimate(costs: Costs, *, planning: bool = True) -> Quote | None:
    """What a job would cost at most (see the module's docstring); None without a price."""
    calls = int(planning) + 1 + REPAIR_ROUNDS
    async with costs.pool.connection() as conn:
        typical = await ledger.typical_call(conn, "job")
    per_call = typical if typical != (0, 0) else FIRST_CALL
    each = costs.price.of_tokens(*per_call)
    if each is None:
        return None
    return Quote(each * calls, calls, per_call)


async def needed(costs: Costs, above: float | None, *, planning: bool = True) -> Quote | None:
    """The quote to show before the job runs, or None: no threshold, no price, or under it."""
    if above is None:
        return None
    quote = await estimate(costs, planning=planning)
    return quote if quote is not None and quote.cost_usd > above else None
