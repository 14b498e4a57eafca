"""Whether the Mechanic has a home repository here, asked before anything starts.

The Mechanic commits to the home repository: on GitHub when `PERSAIS_HOME_REPO` is set,
else the local forge, which starts from the git checkout Persais runs from. The container
image has no checkout (only the installed code, `dynamic/` and `templates/`), so there the
Mechanic needs `PERSAIS_HOME_REPO`. Without it, a job would start the database, plan, and
fail on git deep inside; `persais mechanic` and the chat's jobs ask this first and stop on
one line that says what to set.
"""

from __future__ import annotations

from pathlib import Path

from app.settings import CHECKOUT_ROOT, Settings


def missing(settings: Settings, checkout: Path = CHECKOUT_ROOT) -> str | None:
    """One line when the Mechanic has nowhere to commit; None when it has."""
    if settings.home_repo is not None or (checkout / ".git").exists():
        return None
    return (
        f"PERSAIS_HOME_REPO is not set and {checkout} is not a git checkout (as in the "
        "container image), so there is no local forge: set PERSAIS_HOME_REPO=owner/name and "
        "the GitHub App (`persais setup github`), or run Persais from a git clone"
    )
