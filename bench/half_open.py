"""Half-open requests against `persais serve --no-worker`: what they cost and whether a
genuine delivery still gets through (the `limit_concurrency` question of issue 17).

    .venv/bin/python bench/half_open.py [--connections 3000]

Opens N connections that each send a request line and one header and then nothing, measures
the server's RSS before and after, posts one signed `ping` meanwhile, and counts how many of
the N the server closed after a while.
"""

from __future__ import annotations

import argparse
import socket
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.processes import free_port, persais, persais_env, wait_ready  # noqa: E402
from tests.support.webhooks import example, post_github  # noqa: E402


def closed_by_server(sockets: list[socket.socket]) -> int:
    closed = 0
    for sock in sockets:
        sock.setblocking(False)
        try:
            closed += sock.recv(1) == b""
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
    return closed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--connections", type=int, default=3000)
    parser.add_argument("--wait", type=float, default=10.0, help="seconds before counting")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="persais-half-open-") as folder:
        tmp = Path(folder)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        argv = ["serve", "--port", str(port), "--no-worker"]
        with persais(argv, persais_env(tmp / "home"), ROOT, tmp / "serve.log") as serve:
            wait_ready(url, serve)
            time.sleep(3)  # past the warm-up
            server = psutil.Process(serve.pid)
            before = server.memory_info().rss
            sockets = []
            for _ in range(args.connections):
                sock = socket.create_connection(("127.0.0.1", port))
                sock.sendall(b"POST /webhooks/github HTTP/1.1\r\nHost: persais\r\n")
                sockets.append(sock)
            time.sleep(3)
            during = server.memory_info().rss
            started = time.monotonic()
            with httpx.Client(base_url=url, timeout=10) as client:
                answer = post_github(client, "ping", example("ping"))
            took = time.monotonic() - started
            rss = f"RSS {before / 2**20:.1f} -> {during / 2**20:.1f} MiB"
            ping = f"a signed ping: {answer.status_code} in {took:.3f} s"
            print(f"{len(sockets)} half-open requests: {rss}; {ping}")
            time.sleep(args.wait)
            print(f"after {args.wait + 3:.0f} s: {closed_by_server(sockets)} of {len(sockets)}"
                  " closed by the server")  # fmt: skip
            for sock in sockets:
                sock.close()


if __name__ == "__main__":
    main()
