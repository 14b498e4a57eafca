"""`persais doctor` online with every part configured, against the local fakes (GitHub, Bot
API, Fly, the scripted model with embeddings): the wall time of the whole command, as a user
waits for it (issue 18 asks for < 3 s), and `--offline` beside it.

    .venv/bin/python bench/doctor.py [--runs 5]

The database is the embedded Postgres in a temporary PERSAIS_HOME; a first run (which
creates it) is not counted.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.fake_fly import FLY_TOKEN, fake_fly  # noqa: E402
from tests.support.fake_github import APP_ID, app_key_pair, fake_github  # noqa: E402
from tests.support.fake_telegram import BOT_ID, fake_telegram  # noqa: E402
from tests.support.processes import persais_env  # noqa: E402
from tests.support.scripted_llm import scripted_llm  # noqa: E402


def once(env: dict[str, str], cwd: Path, *flags: str) -> tuple[float, str, int]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "app", "doctor", *flags],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    return time.perf_counter() - started, done.stdout, done.returncode


def parts(env: dict[str, str], cwd: Path) -> None:
    """Each check alone, one after another, in a fresh process (where the time goes)."""
    code = (
        "import time; from app import doctor; from app.settings import load_settings\n"
        "s = load_settings()\n"
        "for name, check in doctor.checks(False).items():\n"
        "    t = time.perf_counter(); r = check(s)\n"
        "    print(f'  {name:<10} {r.status:<7} {time.perf_counter() - t:.2f} s')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True, text=True
    )
    print("each part alone:\n" + done.stdout + done.stderr)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    private, public = app_key_pair()
    with tempfile.TemporaryDirectory(prefix="persais-doctor-") as folder, ExitStack() as stack:
        tmp = Path(folder)
        (tmp / "app.pem").write_text(private)
        gh_url, github = stack.enter_context(fake_github(public))
        github.add_repo("ada/persais", files={"README.md": "hi\n"})
        tg_url, telegram = stack.enter_context(fake_telegram(BOT_ID))
        telegram.webhook = {"url": "https://persais.example/webhooks/telegram"}
        llm_url, _ = stack.enter_context(scripted_llm([]))
        fly_url, _ = stack.enter_context(fake_fly(app="persais-bench", machines=2))
        env = persais_env(
            tmp / "home", None,
            GITHUB_APP_ID=str(APP_ID), GITHUB_PRIVATE_KEY_PATH=str(tmp / "app.pem"),
            GITHUB_API_URL=gh_url, PERSAIS_HOME_REPO="ada/persais", TELEGRAM_API_URL=tg_url,
            PERSAIS_TELEGRAM_ALLOWED_USERS="42", LLM_API_BASE=llm_url, LLM_API_KEY="sk-bench",
            LLM_MODEL="scripted/model", EMBEDDINGS_MODEL="scripted-embedding",
            FLY_API_URL=fly_url, FLY_API_TOKEN=FLY_TOKEN, FLY_APP_NAME="persais-bench",
        )  # fmt: skip
        first, out, code = once(env, tmp)
        parts(env, tmp)
        print(f"first run (creates the embedded Postgres): {first:.2f} s, exit {code}")
        print(out)
        for flags in ((), ("--offline",)):
            times = []
            for _ in range(args.runs):
                took, out, code = once(env, tmp, *flags)
                assert code == 0, out
                times.append(took)
            label = " ".join(("doctor", *flags))
            print(
                f"{label}: median {statistics.median(times):.2f} s,"
                f" min {min(times):.2f}, max {max(times):.2f} ({args.runs} runs)"
            )


if __name__ == "__main__":
    main()
