"""How long each kind of record is kept: the settings, read once into plain values."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from app.settings import Settings


@dataclass(frozen=True)
class Policy:
    inbox_days: float = 14
    jobs_days: float = 7
    outbox_days: float = 7
    approvals_days: float = 30
    refusals_days: float = 30
    refusal_window_seconds: float = 24 * 3600
    agent_state_days: float = 30
    releases_keep: int = 5
    # Rows removed per transaction: each batch holds its row locks for milliseconds.
    batch: int = 1000

    @classmethod
    def from_settings(cls, settings: Settings) -> Policy:
        return cls(
            inbox_days=settings.retention_inbox_days,
            jobs_days=settings.retention_jobs_days,
            outbox_days=settings.retention_outbox_days,
            approvals_days=settings.retention_approvals_days,
            refusals_days=settings.retention_refusals_days,
            refusal_window_seconds=settings.refusal_window_seconds,
            agent_state_days=settings.retention_agent_state_days,
            releases_keep=settings.retention_releases_keep,
        )


@dataclass(frozen=True)
class Place:
    """Where the files are: release folders, and the image's own agents (always kept)."""

    home: Path
    image_agents: Path
    pinned_release: str | None = None  # PERSAIS_RELEASE: this process runs it, keep it

    @classmethod
    def from_settings(cls, settings: Settings) -> Place:
        return cls(settings.home, settings.resolved_agents_dir(), settings.release)
