"""Where a person reads a local pull request. The forge records the command that prints it
(`persais pr show N`: a job's `pr_url`, the [View PR] choice of its question), and a surface
turns that into the console's page as it shows it — at PERSAIS_PUBLIC_URL, else where the
running `persais serve` answers — so the address is the one of that moment, never a port
kept in a row; with no console to send anyone to, the command is what is shown. GitHub's
pull requests have their own pages and pass through unchanged."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from app.web.address import running_address

if TYPE_CHECKING:
    from app.settings import Settings

COMMAND = re.compile(r"persais pr show (\d+)")


def pull_link(number: int) -> str:
    """What the local forge records as pull request `number`'s address."""
    return f"persais pr show {number}"


def console_base(settings: Settings) -> str | None:
    """The console's base URL as people reach it now, if there is one."""
    return settings.public_url or running_address(settings.home)


def console_path(link: str) -> str | None:
    """The console's page of a recorded local pull request's link (`/console/pulls/N`);
    None for any other address."""
    found = COMMAND.fullmatch(link)
    return None if found is None else f"/console/pulls/{found[1]}"


def shown(link: str, base: str | None) -> str:
    """A recorded [View PR] address as it is shown: the console's page of a local pull
    request when `base` is known (`<base>/console/pulls/N`), else `link` as it is."""
    path = console_path(link)
    if path is None or not base:
        return link
    return base.rstrip("/") + path
