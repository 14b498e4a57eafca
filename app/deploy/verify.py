"""Is a loaded release fit to serve? Its changed agents loaded (not quarantined), each
answering the smoke messages of its generated test; nothing that worked before broken."""

from __future__ import annotations

import asyncio

from app.agents.base import Message, as_reply
from app.agents.registry import AgentSet
from app.deploy.files import ReleaseFiles, smoke_cases

SMOKE_TIMEOUT = 10.0


async def problems(
    candidate: AgentSet, serving: AgentSet, changed: set[str], files: ReleaseFiles
) -> list[str]:
    found: list[str] = []
    present = (
        {p.name for p in files.agents.iterdir() if p.is_dir()} if files.agents.is_dir() else set()
    )
    for name in sorted(changed & present):
        if name in candidate.quarantined:
            found.append(f"{name} did not load: {candidate.quarantined[name].reason}")
            continue
        loaded = candidate.agents.get(name)
        if loaded is None:
            found.append(f"{name} is not among the loaded agents")
            continue
        for said, expected in smoke_cases(files, name):
            message = Message(
                text=said, user="persais:smoke", user_name="Persais (smoke test)",
                conversation="persais:smoke", command=loaded.manifest.command,
            )  # fmt: skip
            try:
                reply = as_reply(
                    await asyncio.wait_for(
                        loaded.agent.handle(message, loaded.context), SMOKE_TIMEOUT
                    )
                )
            except Exception as exc:  # the agent's own failure is the finding
                found.append(f"/{loaded.manifest.command} {said!r} failed: {exc!r}"[:300])
                break
            if expected is None and not reply.text.strip():
                found.append(f"/{loaded.manifest.command} {said!r} gave an empty answer")
            elif expected is not None and reply.text != expected:
                found.append(
                    f"/{loaded.manifest.command} {said!r} answered {reply.text[:80]!r},"
                    f" its test expects {expected[:80]!r}"
                )
    for name, before in serving.agents.items():
        if not before.builtin and name in candidate.quarantined:
            reason = candidate.quarantined[name].reason
            found.append(f"{name} worked before and is now quarantined: {reason}")
    return found
