"""`persais console-link`: a one-time login link to the console (it lasts 10 minutes).

The link goes to the running server: the address `persais serve` wrote into PERSAIS_HOME
when it started listening, else PERSAIS_PUBLIC_URL, else `--url`. Whoever can run this on
the machine can read the database anyway, so the link logs in as an admin unless
`--reader` asks for a read-only session.
"""

from __future__ import annotations

import argparse
import getpass
from typing import Any

from app.commands.running import Exit, with_runtime
from app.runtime import Runtime
from app.settings import Settings
from app.web.address import running_address


def register(commands: Any) -> None:
    link = commands.add_parser(
        "console-link", help="print a one-time login link to the console (lasts 10 minutes)"
    )
    link.add_argument(
        "--url", default=None,
        help="the server's address as you reach it (default: the running server's, or "
        "PERSAIS_PUBLIC_URL)",
    )  # fmt: skip
    link.add_argument(
        "--reader", action="store_true", help="a read-only session: see everything, change nothing"
    )
    link.add_argument(
        "--as", dest="person", default=None, metavar="NAME",
        help="who the session is, as the audit log names them (default cli:<your user name>)",
    )  # fmt: skip
    link.set_defaults(func=cmd_console_link)


def base_url(settings: Settings, given: str | None) -> str:
    url = given or running_address(settings.home) or settings.public_url
    if url is None:
        raise Exit(
            2, "no running server found in PERSAIS_HOME and PERSAIS_PUBLIC_URL is unset;"
            " start `persais serve`, or pass --url http://host:port",
        )  # fmt: skip
    if not url.startswith(("http://", "https://")):
        raise Exit(2, f"--url: expected an http(s) address, got {url!r}")
    return url.rstrip("/")


def cmd_console_link(settings: Settings, args: argparse.Namespace) -> int:
    from app.console import auth

    url = base_url(settings, args.url)
    person = args.person or f"cli:{getpass.getuser()}"
    role: auth.Role = "reader" if args.reader else "admin"

    async def mint(runtime: Runtime) -> str:
        async with runtime.pool.connection() as conn:
            return await auth.new_link(conn, person, role)

    token = with_runtime(settings, mint)
    print(f"{url}/console/login/{token}")
    print(f"One use, within {auth.LINK_SECONDS // 60} minutes; it logs in as {person} ({role}).")
    return 0
