"""A Mechanic job's progress lines, replayed from its `job_events` rows the way the chat's
progress message shows them (`app/mechanic_jobs/progress.py`): "⏳ stage" while it runs,
"✓ stage" once the next one starts or the job ends well, "✗ stage" when it ends badly,
"↻ note" for a run resumed after an interruption; "⏳ queued" only until the job starts.

The chat shows the lines of the current run; the console keeps every run's, so a resumed
job shows where the interrupted run stopped ("✗ code (interrupted)").
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Event:
    seq: int
    kind: str  # queued | stage | note | finish
    text: str
    at: datetime | None = None


@dataclass(frozen=True)
class Line:
    """A line as shown, keyed by the event that began it (the element `job-step-{seq}`).
    `text` None: the line is gone (the chat no longer shows "queued")."""

    seq: int
    text: str | None
    state: str  # running | done | failed | note | gone

    @property
    def element(self) -> str:
        return f"job-step-{self.seq}"


def replay(events: Iterable[Event]) -> Iterator[tuple[Event, list[Line]]]:
    """Each event with the lines it changes: the line it adds (seq == event.seq), and the
    earlier lines it marks done, failed or gone."""
    current: tuple[int, str] | None = None  # the stage being worked on: (seq, stage)
    queued: int | None = None
    for event in events:
        changed: list[Line] = []
        if queued is not None:
            changed.append(Line(queued, None, "gone"))
            queued = None
        if event.kind == "queued":
            queued = event.seq
            changed.append(Line(event.seq, "⏳ queued", "running"))
        elif event.kind == "stage":
            if current is not None:
                changed.append(Line(current[0], f"✓ {current[1]}", "done"))
            current = (event.seq, event.text)
            changed.append(Line(event.seq, f"⏳ {event.text}", "running"))
        elif event.kind == "note":
            if current is not None:  # a note opens a run: the one before died mid-stage
                changed.append(Line(current[0], f"✗ {current[1]} (interrupted)", "failed"))
                current = None
            changed.append(Line(event.seq, f"↻ {event.text}", "note"))
        elif event.kind == "finish" and current is not None:
            ok = event.text == "ok"
            mark, state = ("✓", "done") if ok else ("✗", "failed")
            changed.append(Line(current[0], f"{mark} {current[1]}", state))
            current = None
        yield event, changed


def lines(events: Iterable[Event]) -> list[Line]:
    """The lines as they stand after all `events`, in order."""
    shown: dict[int, Line] = {}
    for _, changed in replay(events):
        for line in changed:
            if line.text is None:
                shown.pop(line.seq, None)
            else:
                shown[line.seq] = line
    return [shown[seq] for seq in sorted(shown)]


def finished(events: list[Event]) -> bool:
    """Whether the last run said its ending (its finish is the last event)."""
    return not events or events[-1].kind == "finish"
