"""The configured price of the model, and what a call cost."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from app.settings import Settings

if TYPE_CHECKING:  # a type only: the web process loads no module of the Mechanic
    from mechanic.metering import Usage

MILLION = 1_000_000


@dataclass(frozen=True)
class Price:
    """USD per million tokens; either unset means no price is known."""

    input_per_mtok: float | None = None
    output_per_mtok: float | None = None

    @classmethod
    def of(cls, settings: Settings) -> Price:
        return cls(settings.llm_price_input_per_mtok, settings.llm_price_output_per_mtok)

    @property
    def known(self) -> bool:
        return self.input_per_mtok is not None and self.output_per_mtok is not None

    def of_tokens(self, prompt: int, completion: int) -> float | None:
        if self.input_per_mtok is None or self.output_per_mtok is None:
            return None
        return (prompt * self.input_per_mtok + completion * self.output_per_mtok) / MILLION

    def cost(self, usage: Usage) -> float | None:
        """The provider's (or Aider's) own figure when it reported one: that is what was
        billed; else the configured price of the reported tokens; else None (unknown)."""
        if usage.cost_usd is not None:
            return usage.cost_usd
        if usage.prompt_tokens is None or usage.completion_tokens is None:
            return None
        return self.of_tokens(usage.prompt_tokens, usage.completion_tokens)


@dataclass(frozen=True)
class Budgets:
    """USD caps; None: no cap."""

    review: float | None = None
    job: float | None = None
    day: float | None = None

    @classmethod
    def of(cls, settings: Settings) -> Budgets:
        return cls(settings.budget_review_usd, settings.budget_job_usd, settings.budget_day_usd)

    def for_kind(self, kind: str) -> float | None:
        return {"review": self.review, "job": self.job}.get(kind)
