"""One line of `persais doctor`: a part, how it is, what was seen and how to fix it.

"missing" is not a failure (that part of Persais is simply off); "broken" is, and makes the
exit code 1.
"""

from __future__ import annotations

from dataclasses import dataclass

OK, MISSING, BROKEN = "ok", "missing", "broken"


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    detail: str
    fix: str = ""

    def line(self) -> str:
        text = f"{self.name:<10} {self.status:<8} {self.detail}"
        return f"{text} — {self.fix}" if self.fix else text
