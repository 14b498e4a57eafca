"""The Dockerfile and fly.toml, checked without a Docker daemon (issue 18, item 8).

What can go wrong in them without a build: a command Persais's CLI does not accept, ports
that disagree, a file the image copies that is not there (or that `.dockerignore` drops),
the image's layout hiding `templates/` and `dynamic/` from the code, Fly's VM sizes drifting
from the measured memory. The image's layout is rebuilt in a temporary directory from the
Dockerfile's own COPY lines, and Persais is started there as a real process.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from app.cli import _parser
from app.settings import AIDER_CANDIDATES, Settings
from mechanic.aider_version import AIDER_CHAT_VERSION

ROOT = Path(__file__).resolve().parent.parent
FLY = tomllib.loads((ROOT / "fly.toml").read_text())
ANY_ADDRESS = "0.0.0.0"  # noqa: S104 (a container listens on every interface)


@dataclass(frozen=True)
class Instruction:
    stage: int  # 0: the build stage, 1: the runtime stage
    keyword: str
    args: str


def dockerfile() -> list[Instruction]:
    """The instructions, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    found: list[Instruction] = []
    stage = -1
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, args = line.partition(" ")
        if keyword.upper() == "FROM":
            stage += 1
        found.append(Instruction(stage, keyword.upper(), args.strip()))
    return found


def of(keyword: str, stage: int | None = None) -> list[str]:
    return [i.args for i in dockerfile() if i.keyword == keyword and stage in (None, i.stage)]


def image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for args in of("ENV", stage=1):
        for pair in shlex.split(args):
            key, _, value = pair.partition("=")
            env[key] = value
    return env


def context_copies() -> list[tuple[list[str], str]]:
    """(sources, destination) of each COPY from the build context (not --from a stage)."""
    copies = []
    for args in of("COPY"):
        words = shlex.split(args)
        if any(w.startswith("--from=") for w in words):
            continue
        paths = [w for w in words if not w.startswith("--")]
        copies.append((paths[:-1], paths[-1]))
    return copies


def ignored(path: str) -> bool:
    patterns = [p.strip() for p in (ROOT / ".dockerignore").read_text().splitlines() if p.strip()]
    parts = Path(path).parts
    return any(
        fnmatch.fnmatch(path, p) or fnmatch.fnmatch(parts[0], p) or p == parts[0]
        for p in patterns
        if not p.startswith("#")
    )


def parse(command: str) -> object:
    """The command as `persais` reads it; argparse exits (a test failure) on anything else."""
    argv = shlex.split(command)
    assert argv[0] == "persais", command
    return _parser().parse_args(argv[1:])


# --- the Dockerfile ---------------------------------------------------------------------


def test_every_file_the_image_copies_is_in_the_build_context() -> None:
    copies = context_copies()
    assert copies
    for sources, _ in copies:
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
            assert not ignored(source), f"COPY {source}: .dockerignore drops it"


def test_the_image_command_and_port_are_what_fly_and_the_cli_expect() -> None:
    (cmd,) = of("CMD")
    args = parse(" ".join(shlex.quote(w) for w in json.loads(cmd)))
    (exposed,) = of("EXPOSE")
    assert vars(args)["command"] == "serve"
    assert vars(args)["host"] == ANY_ADDRESS
    assert vars(args)["port"] == int(exposed) == FLY["http_service"]["internal_port"]


def test_aider_is_installed_at_the_pin_where_persais_looks_for_it() -> None:
    (install,) = [r for r in of("RUN", stage=0) if "/opt/aider" in r]
    expression = re.search(r"\$\(sed -n '([^']+)' mechanic/aider_version.py\)", install)
    assert expression is not None, install
    pinned = subprocess.run(
        ["sed", "-n", expression.group(1), "mechanic/aider_version.py"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert pinned == AIDER_CHAT_VERSION
    assert Path(image_env()["AIDER_BIN"]) in AIDER_CANDIDATES


def stage_image(root: Path) -> Path:
    """The runtime image's /app, as the Dockerfile lays it out: the build stage installs
    Persais editable from its WORKDIR, and the runtime stage copies that code and the
    context's folders to the same paths."""
    (workdir,) = of("WORKDIR", stage=0)
    assert any("pip install -e ." in r for r in of("RUN", stage=0)), "install is not editable"
    kept = [shlex.split(a) for a in of("COPY", stage=1) if a.startswith("--from=build")]
    kept_code = {words[-1] for words in kept}
    app = root / workdir.lstrip("/")
    for package in ("app", "mechanic"):  # what the build stage installed from its WORKDIR
        assert f"{workdir}/{package}" in kept_code, f"the image drops {workdir}/{package}"
        shutil.copytree(ROOT / package, app / package, ignore=shutil.ignore_patterns("__pycache__"))
    for sources, destination in context_copies():
        target = root / destination.lstrip("/")
        if not destination.startswith(workdir + "/") or sources[0] in ("app", "mechanic"):
            continue  # the build stage's own copies
        for source in sources:
            shutil.copytree(ROOT / source, target)
    return app


def run_in_image(
    root: Path, app: Path, *argv: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    given = env or {}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PERSAIS_", "GITHUB_"))}
    env.pop("DATABASE_URL", None)
    env.update(image_env())
    env.pop("AIDER_BIN")  # not installed here
    env.update(PYTHONPATH=str(app), PERSAIS_HOME=str(root / "data"), HOME=str(root), **given)
    return subprocess.run(
        [sys.executable, *argv],
        cwd=app, env=env, input=stdin, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_in_the_image_persais_finds_its_templates_and_agents(tmp_path: Path) -> None:
    app = stage_image(tmp_path)
    found = run_in_image(
        tmp_path, app, "-c",
        "from app.settings import load_settings; from app.mechanic_jobs import composed;"
        "s = load_settings(env_file=None); print(composed.TEMPLATES);"
        "print(s.resolved_agents_dir())",
    )  # fmt: skip
    assert found.returncode == 0, found.stderr
    templates, agents = (Path(line) for line in found.stdout.split())
    assert templates == app / "templates"
    assert (templates / "agent").is_dir()
    assert agents == app / "dynamic" / "agents"
    assert agents.is_dir()


def test_the_mechanic_without_a_home_repository_stops_at_once_on_one_line(
    tmp_path: Path,
) -> None:
    app = stage_image(tmp_path)
    (tmp_path / "data").mkdir()
    done = run_in_image(
        tmp_path, app, "-m", "app", "mechanic", "Create an agent Echo", "--template-only",
        "--name", "echo",
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout == ""
    (line,) = done.stderr.strip().splitlines()
    assert "PERSAIS_HOME_REPO" in line
    assert "not a git checkout" in line
    assert list((tmp_path / "data").iterdir()) == []  # no database was started

    # With the home repository named, that line is gone (what fails next is the App's).
    named = run_in_image(
        tmp_path, app, "-c",
        "from app.settings import Settings; from app.mechanic_jobs import home_repository;"
        "print(home_repository.missing(Settings(PERSAIS_HOME_REPO='acme/persais',"
        " GITHUB_APP_ID=1, GITHUB_PRIVATE_KEY='k', GITHUB_WEBHOOK_SECRET='s')))",
    )  # fmt: skip
    assert named.stdout.strip() == "None", named.stderr


def test_a_checkout_has_a_local_forge(tmp_path: Path) -> None:
    from app.mechanic_jobs import home_repository

    settings = Settings()
    assert home_repository.missing(settings, tmp_path) is not None
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    assert home_repository.missing(settings, tmp_path) is None


# --- fly.toml ---------------------------------------------------------------------------


def test_every_fly_process_and_the_release_command_are_persais_commands() -> None:
    web = vars(parse(FLY["processes"]["web"]))
    assert web["command"] == "serve"
    assert web["no_worker"]
    assert web["host"] == ANY_ADDRESS
    assert web["port"] == FLY["http_service"]["internal_port"]

    worker = vars(parse(FLY["processes"]["worker"]))
    assert worker["command"] == "worker"
    # The deployer asks each machine's /ready on PERSAIS_FLY_READY_PORT.
    assert worker["ready_port"] == Settings().fly_ready_port == FLY["http_service"]["internal_port"]
    assert vars(parse(FLY["deploy"]["release_command"]))["command"] == "migrate"


def test_fly_routes_http_to_the_web_process_and_checks_a_real_route() -> None:
    groups = set(FLY["processes"])
    assert set(FLY["http_service"]["processes"]) == {"web"}
    server = (ROOT / "app/web/server.py").read_text()
    for check in FLY["http_service"]["checks"]:
        assert f'Route("{check["path"]}"' in server
    sized = [group for vm in FLY["vm"] for group in vm["processes"]]
    assert sorted(sized) == sorted(groups), "each process group gets exactly one VM size"


def measured_idle_rss() -> dict[str, tuple[float, str]]:
    """The idle RSS (MB) and the "Fly VM" column, per Fly group, from docs/benchmarks.md's
    "Start-up and memory" table."""
    text = (ROOT / "docs/benchmarks.md").read_text()
    section = text.split("## Start-up and memory", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, tuple[float, str]] = {}
    for line in section.splitlines():
        group = re.search(r"\(Fly's `(\w+)`\)", line)
        if group is None:
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        after = re.search(r"\*\*([\d.]+) /", cells[2])
        assert after is not None, line
        rows[group.group(1)] = (float(after.group(1)), cells[-1])
    return rows


def test_fly_vm_sizes_are_the_measured_ones() -> None:
    measured = measured_idle_rss()
    assert set(measured) == set(FLY["processes"])
    for vm in FLY["vm"]:
        memory = vm["memory"]
        megabytes = int(memory.removesuffix("mb"))
        for group in vm["processes"]:
            idle, column = measured[group]
            assert column == f"{megabytes} MB", (
                f"{group}: benchmarks say {column}, fly.toml {memory}"
            )
            assert idle * 2 <= megabytes, f"{group} idles at {idle} MB on a {memory} machine"


def test_the_worker_has_room_for_aider_beside_it() -> None:
    """Aider runs on the worker's machine: importing aider.main and litellm peaks ~170 MB."""
    idle, _ = measured_idle_rss()["worker"]
    (vm,) = [vm for vm in FLY["vm"] if "worker" in vm["processes"]]
    assert idle + 170 <= int(vm["memory"].removesuffix("mb")) * 0.75


def test_a_stopping_process_finishes_before_fly_kills_it() -> None:
    """Fly sends SIGKILL `kill_timeout` seconds after SIGTERM: the process's own deadline,
    and the running jobs' grace inside it, must come first."""
    from app.commands.service import SHUTDOWN_DEADLINE
    from app.worker.queue import GRACEFUL_STOP_SECONDS

    assert FLY["kill_signal"] == "SIGTERM"
    assert GRACEFUL_STOP_SECONDS < SHUTDOWN_DEADLINE < FLY["kill_timeout"]


def test_the_image_runs_as_a_user_who_owns_persais_home() -> None:
    home = image_env()["PERSAIS_HOME"]
    assert FLY["env"]["PERSAIS_HOME"] == home
    (user,) = of("USER", stage=1)
    (setup,) = [r for r in of("RUN", stage=1) if "useradd" in r]
    assert f"mkdir -p {home}" in setup
    assert f"chown {user}:{user} {home}" in setup
    assert image_env()["PERSAIS_REQUIRE_SANDBOX"] == FLY["env"]["PERSAIS_REQUIRE_SANDBOX"]


@pytest.mark.slow
def test_in_the_image_the_chats_mechanic_refuses_before_any_job(
    tmp_path: Path, database: str, sql: Callable[..., list[tuple[Any, ...]]]
) -> None:
    app = stage_image(tmp_path)
    env = {"DATABASE_URL": database, "LLM_API_KEY": "sk-test"}
    done = run_in_image(
        tmp_path, app, "-m", "app", "chat", "--name", "ada",
        stdin="/mechanic\nCreate an agent Echo that repeats my messages\n", env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (line,) = [x for x in done.stdout.splitlines() if "The Mechanic cannot run here" in x]
    assert "PERSAIS_HOME_REPO is not set" in line
    assert "On it" not in done.stdout
    assert sql("SELECT count(*) FROM jobs") == [(0,)]


@pytest.mark.slow
def test_in_the_image_the_doctor_says_the_mechanic_needs_a_home_repository(
    tmp_path: Path, database: str
) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    app = stage_image(tmp_path)
    env = {"DATABASE_URL": database}
    alone = run_in_image(tmp_path, app, "-m", "app", "doctor", "--offline", env=env)
    (line,) = [x for x in alone.stdout.splitlines() if x.startswith("github ")]
    assert line.split()[1] == "missing"
    assert "the Mechanic cannot run (no git checkout here for a local forge)" in line

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    env |= {"GITHUB_APP_ID": "7", "GITHUB_PRIVATE_KEY": key.decode(), "GITHUB_WEBHOOK_SECRET": "s"}
    app_only = run_in_image(tmp_path, app, "-m", "app", "doctor", "--offline", env=env)
    assert app_only.returncode == 1
    (line,) = [x for x in app_only.stdout.splitlines() if x.startswith("github ")]
    assert line.split()[1] == "broken"
    assert "PERSAIS_HOME_REPO is unset" in line
    assert line.endswith("set PERSAIS_HOME_REPO=owner/name")

    env |= {"PERSAIS_HOME_REPO": "acme/persais"}
    named = run_in_image(tmp_path, app, "-m", "app", "doctor", "--offline", env=env)
    (line,) = [x for x in named.stdout.splitlines() if x.startswith("github ")]
    assert line.split()[1] == "ok", line
    assert line.endswith("home: acme/persais")
