"""Docker cannot build here, so the deploy files are kept honest by reading them."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from app.cli import _parser
from app.settings import AIDER_CANDIDATES, Settings

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]


def assert_runs_persais(command: list[str]) -> None:
    """`command` starts a real console script, and our CLI accepts its arguments."""
    assert command[0] in SCRIPTS, f"{command[0]} is not an entry point of the package"
    _parser().parse_args(command[1:])  # exits (SystemExit) on an unknown command


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    found = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            keyword, _, rest = line.strip().partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def test_fly_toml_names_real_commands_and_checks() -> None:
    fly = tomllib.loads((ROOT / "fly.toml").read_text())
    assert set(fly["processes"]) == {"web", "worker"}
    for command in fly["processes"].values():
        assert_runs_persais(shlex.split(command))
    assert fly["deploy"]["release_command"] == "persais migrate"
    assert_runs_persais(shlex.split(fly["deploy"]["release_command"]))
    assert isinstance(fly["kill_timeout"], int)
    assert fly["kill_timeout"] >= 20
    checks = fly["http_service"]["checks"]
    assert [check["path"] for check in checks] == ["/health"]
    web = shlex.split(fly["processes"]["web"])
    assert web[web.index("--port") + 1] == str(fly["http_service"]["internal_port"])
    assert "--no-worker" in web  # the worker runs as its own process group


def test_the_dockerfile_is_multi_stage_non_root_and_starts_persais() -> None:
    instructions = dockerfile_instructions()
    assert sum(1 for keyword, _ in instructions if keyword == "FROM") >= 2
    users = [rest for keyword, rest in instructions if keyword == "USER"]
    assert users
    assert users[-1] not in {"root", "0"}
    cmd = [rest for keyword, rest in instructions if keyword == "CMD"][-1]
    assert_runs_persais(json.loads(cmd))
    assert not [rest for keyword, rest in instructions if keyword == "ENTRYPOINT"]
    env = " ".join(rest for keyword, rest in instructions if keyword == "ENV")
    aider = re.search(r"AIDER_BIN=(\S+)", env)
    assert aider is not None
    assert Path(aider.group(1)) in AIDER_CANDIDATES
    assert "/opt/aider" in aider.group(1)
    runs = " ".join(rest for keyword, rest in instructions if keyword == "RUN")
    assert "aider_version.py" in runs  # the pin comes from its one source
    assert "git" in runs


def readme_test_command() -> str:
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- test-command -->\s*```(?:sh|bash)?\n(.+?)\n```", readme, re.S)
    assert match, "the README marks its test command with <!-- test-command -->"
    return match.group(1).strip()


def test_ci_runs_the_readmes_test_command() -> None:
    command = readme_test_command()
    assert command in (ROOT / ".ci" / "run").read_text()
    for workflow in ("ci.yml", "fly-deploy.yml"):
        assert command in (ROOT / ".github" / "workflows" / workflow).read_text()
    deploy = (ROOT / ".github" / "workflows" / "fly-deploy.yml").read_text()
    assert "concurrency:" in deploy
    assert "secrets.FLY_API_TOKEN" in deploy


def test_env_example_documents_every_setting_and_parses_as_is(tmp_path: Path) -> None:
    documented = {
        line.split("=", 1)[0]
        for line in (ROOT / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    }
    aliases = {field.alias for field in Settings.model_fields.values()}
    assert documented == aliases
    env_file = tmp_path / ".env"
    shutil.copy(ROOT / ".env.example", env_file)
    Settings(_env_file=env_file)  # empty values mean "not set", and the rest are valid


@pytest.mark.parametrize("command", [["serve", "--help"], ["worker", "--help"], ["--help"]])
def test_the_console_script_answers(command: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "app", *command], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0
    assert "usage: persais" in done.stdout
