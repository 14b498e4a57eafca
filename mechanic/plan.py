"""Plan: turn a request into what to build, or into one clarifying question."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Literal, Protocol

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from mechanic.guidance import Guidance
from mechanic.scaffold import HOST_PATTERN

PROMPTS = Path(__file__).parent / "prompts"
_NAME = r"^[a-z][a-z0-9_]{1,31}$"


class Behaviour(BaseModel):
    say: str = Field(max_length=500)
    expect: str = Field(min_length=1, max_length=2000)


class Device(BaseModel):
    """The one PLC a modbus_tool reads: its grant names it, and an admin approves it."""

    host: str = Field(max_length=253, pattern=HOST_PATTERN)
    port: int = Field(default=502, ge=1, le=65535)
    unit: int = Field(default=1, ge=0, le=247)


class Plan(BaseModel):
    kind: Literal["agent", "tool", "modbus_tool"]
    name: str = Field(pattern=_NAME)
    command: str = Field(pattern=_NAME)
    description: str = Field(min_length=1, max_length=200, pattern=r'^[^"\\\n]+$')
    behaviour: list[Behaviour] = Field(min_length=1, max_length=5)
    # Other agents the change must edit or remove; the person confirms them before it runs.
    also_changes: list[Annotated[str, Field(pattern=_NAME)]] = Field(
        default_factory=list, max_length=5
    )

    device: Device | None = None  # modbus_tool only: the PLC it may read

    @field_validator("also_changes", mode="before")
    @classmethod
    def _none_is_empty(cls, value: object) -> object:
        return [] if value is None else value

    @model_validator(mode="after")
    def _device_for_modbus(self) -> Plan:
        if self.kind == "modbus_tool" and self.device is None:
            raise ValueError("a modbus_tool needs its device (host, port, unit)")
        if self.kind != "modbus_tool":
            self.device = None
        return self

    @model_validator(mode="after")
    def _others_are_others(self) -> Plan:
        if self.name in self.also_changes:
            raise ValueError(f"also_changes names the agent itself ({self.name})")
        self.also_changes = sorted(set(self.also_changes))
        return self

    @property
    def files(self) -> list[str]:
        return [
            path
            for name in (self.name, *self.also_changes)
            for path in (
                f"dynamic/agents/{name}/agent.py",
                f"dynamic/agents/{name}/agent.toml",
                f"tests/dynamic/test_{name}.py",
            )
        ]

    def confirmation(self) -> str | None:
        """The question a person must answer yes to before the job runs, if it changes
        other agents."""
        if not self.also_changes:
            return None
        others = ", ".join(self.also_changes)
        return f"This change will also edit/remove agents {others} — reply yes to go ahead."


class Clarification(BaseModel):
    question: str = Field(min_length=1, max_length=500)


class Model(Protocol):
    async def complete(self, prompt: str, *, json_output: bool = False) -> str: ...


class PlanError(ValueError):
    pass


def prompts() -> Environment:
    return Environment(
        loader=FileSystemLoader(PROMPTS),
        undefined=StrictUndefined,
        autoescape=False,  # noqa: S701 - prompts are plain text
        keep_trailing_newline=True,
    )


def plan_prompt(request: str, guidance: Guidance | None = None) -> str:
    """The planner's prompt: its rules, what memory and the repository's conventions say,
    then the request, fenced as data."""
    return (
        prompts()
        .get_template("plan.md")
        .render(request=request[:4000], guidance=guidance if guidance is not None else Guidance())
    )


async def make_plan(
    request: str, model: Model, guidance: Guidance | None = None
) -> Plan | Clarification:
    answer = await model.complete(plan_prompt(request, guidance), json_output=True)
    data = _json(answer)
    if data.get("question"):
        try:
            return Clarification(question=str(data["question"]))
        except ValidationError as exc:
            raise PlanError(f"the model's question is unusable: {exc.errors()[0]['msg']}") from None
    try:
        return Plan.model_validate({k: v for k, v in data.items() if k != "question"})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise PlanError(f"the model's plan is invalid: {where}: {first['msg']}") from None


def _json(answer: str) -> dict[str, object]:
    fenced = re.search(r"```(?:json)?\s*(\{.*\})\s*```", answer, re.S)
    text = fenced.group(1) if fenced else answer.strip()
    try:
        data = json.loads(text)
    except ValueError:
        raise PlanError("the model did not answer with a JSON plan") from None
    if not isinstance(data, dict):
        raise PlanError("the model's plan is not a JSON object")
    return data
