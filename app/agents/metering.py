"""Per-agent Prometheus series: answers, errors and answer time of each dynamic agent.

Counted where the core calls an agent's host (`HostedAgent.handle`), in this process's own
registry: `/metrics` serves it beside the web metrics (`app.web.server`), and the console's
Agents page reads it in process. A process that answers no agent (the web-only one) has no
samples. The deploy's smoke messages are not counted: they are not people's.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram

REGISTRY = CollectorRegistry()
ANSWERS = Counter(
    "persais_agent_answers", "Messages an agent answered", ["agent"], registry=REGISTRY
)
ERRORS = Counter(
    "persais_agent_errors", "Messages an agent failed (crash, timeout, bad reply)", ["agent"],
    registry=REGISTRY,
)  # fmt: skip
SECONDS = Histogram(
    "persais_agent_answer_seconds", "Time an agent took to answer or fail", ["agent"],
    registry=REGISTRY, buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)  # fmt: skip
UNCOUNTED = frozenset({"persais:smoke"})  # conversations whose messages are not people's


def observe(agent: str, *, ok: bool, seconds: float) -> None:
    (ANSWERS if ok else ERRORS).labels(agent).inc()
    SECONDS.labels(agent).observe(seconds)


@dataclass(frozen=True)
class Figures:
    answers: int
    errors: int
    mean_seconds: float | None  # None: nothing timed


def figures() -> dict[str, Figures]:
    """What this process counted, per agent (an agent never called is absent)."""
    answers: dict[str, float] = {}
    errors: dict[str, float] = {}
    count: dict[str, float] = {}
    total: dict[str, float] = {}
    for metric in REGISTRY.collect():
        for sample in metric.samples:
            agent = sample.labels.get("agent")
            if agent is None:
                continue
            if sample.name == "persais_agent_answers_total":
                answers[agent] = sample.value
            elif sample.name == "persais_agent_errors_total":
                errors[agent] = sample.value
            elif sample.name == "persais_agent_answer_seconds_count":
                count[agent] = sample.value
            elif sample.name == "persais_agent_answer_seconds_sum":
                total[agent] = sample.value
    return {
        agent: Figures(
            answers=int(answers.get(agent, 0)),
            errors=int(errors.get(agent, 0)),
            mean_seconds=total.get(agent, 0) / count[agent] if count.get(agent) else None,
        )
        for agent in sorted(set(answers) | set(errors) | set(count))
    }
