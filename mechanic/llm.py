"""The model, for the Mechanic's own calls (planning): an OpenAI-compatible chat API."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx


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
            return str(response.json()["choices"][0]["message"]["content"])
        except (ValueError, KeyError, IndexError, TypeError):
            raise ModelError("the model's answer has no message") from None
