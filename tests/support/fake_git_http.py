"""Git's smart HTTP protocol for the fake GitHub: `git http-backend` run as a CGI program.

`/{owner}/{repo}.git/info/refs`, `/git-upload-pack` and `/git-receive-pack` are handed to
git's own server side with the CGI environment it expects, and its CGI answer (`Status:` and
other headers, a blank line, the body) becomes the HTTP response. aiohttp has already undone
a gzip `Content-Encoding` when it read the body, so none is passed on.
"""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

from aiohttp import web

from tests.support.fake_github_repos import git_env


async def http_backend(
    request: web.Request, *, project_root: Path, home: Path, remote_user: str
) -> web.Response:
    body = await request.read()
    env = {
        **git_env(home),
        "GIT_PROJECT_ROOT": str(project_root),
        "GIT_HTTP_EXPORT_ALL": "1",
        "PATH_INFO": request.path,
        "QUERY_STRING": request.query_string,
        "REQUEST_METHOD": request.method,
        "CONTENT_TYPE": request.headers.get("Content-Type", ""),
        "CONTENT_LENGTH": str(len(body)),
        "REMOTE_USER": remote_user,
        "REMOTE_ADDR": request.remote or "127.0.0.1",
        "HTTP_GIT_PROTOCOL": request.headers.get("Git-Protocol", ""),
    }
    done = await asyncio.to_thread(
        subprocess.run,
        ["git", "http-backend"],
        input=body,
        capture_output=True,
        env=env,
        check=False,
    )
    return cgi_response(done.stdout)


def cgi_response(output: bytes) -> web.Response:
    """A CGI program's output as a response: headers up to the first blank line, then body."""
    ends = [(i, len(sep)) for sep in (b"\r\n\r\n", b"\n\n") if (i := output.find(sep)) >= 0]
    if not ends:
        return web.Response(status=500, text="http-backend gave no CGI headers")
    at, size = min(ends)
    status = 200
    headers: dict[str, str] = {}
    for line in output[:at].decode("latin-1").splitlines():
        name, _, value = line.partition(":")
        if name.strip().lower() == "status":
            status = int(value.split()[0])
        elif name.strip():
            headers[name.strip()] = value.strip()
    return web.Response(status=status, body=output[at + size :], headers=headers)
