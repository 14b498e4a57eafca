"""The model, for the Mechanic's own calls (planning): an OpenAI-compatible chat API.

Each call is metered (`mechanic.metering`): the meter of the work it belongs to may refuse
it before it is sent, and hears the `usage` its answer reports (and the provider's own cost,
when it says one: OpenRouter's `usage.cost`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from mechanic.metering import Usage, after, before


class ModelError(RuntimeError):
    pass


@dataclass(frozen=True)
class ChatModel:
    api_base: str  # e.g. https://openrouter.ai/api/v1
    api_key: str
    model: str
    timeout: float = 120.0

    async def complete(
        self, prompt: str, *, json_output: bool = False, system: str | None = None
    ) -> str:
        """The model's answer to `prompt`; `system` holds instructions kept apart from it."""
        messages = [{"role": "system", "content": system}] if system else []
        messages.append({"role": "user", "content": prompt})
        body: dict[str, Any] = {"model": self.model, "messages": messages, "temperature": 0}
        if json_output:
            body["response_format"] = {"type": "json_object"}
        await before(len(prompt) + len(system or ""))
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                response = await client.post(
                    f"{self.api_base.rstrip('/')}/chat/completions",
                    json=body,
                    headers={"Authorization": f"Bearer {self.api_key}"},
                )
        except httpx.HTTPError as exc:
            raise ModelError(f"the model did not answer: {type(exc).__name__}") from None
        if response.status_code != 200:
            raise ModelError(f"the model answered {response.status_code}: {response.text[:200]}")
        try:
            answer = response.json()
            content = str(answer["choices"][0]["message"]["content"])
        except (ValueError, KeyError, IndexError, TypeError):
            raise ModelError("the model's answer has no message") from None
        await after(usage_of(answer, self.model))
        return content


def usage_of(answer: object, model: str) -> Usage:
    """The `usage` of a chat completion: tokens as reported (None where it says nothing) and
    the provider's cost when it reports one; nothing is guessed."""
    usage = answer.get("usage") if isinstance(answer, dict) else None
    usage = usage if isinstance(usage, dict) else {}

    def number(key: str) -> float | None:
        value = usage.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            return None
        return float(value)

    prompt, completion, cost = (number(k) for k in ("prompt_tokens", "completion_tokens", "cost"))
    named = answer.get("model") if isinstance(answer, dict) else None
    return Usage(
        named if isinstance(named, str) and named else model,
        None if prompt is None else int(prompt),
        None if completion is None else int(completion),
        cost,
    )
