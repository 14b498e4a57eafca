"""`persais` as a person meets it: a short help alone, `--version`, a typo answered with the
nearest command, help on every flag, and command output not buried under log lines."""

from __future__ import annotations

import argparse
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
from psycopg import sql as pgsql

from app.cli import _parser
from tests.support import postgres as support_postgres
from tests.support.processes import persais_env

ROOT = Path(__file__).resolve().parents[1]


def persais(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m app ARGS` in an empty folder (no `.env` of the checkout's is read)."""
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        env=persais_env(tmp_path / "home", **env), cwd=tmp_path,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_persais_alone_prints_a_short_help_and_succeeds(tmp_path: Path) -> None:
    done = persais(tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("usage: persais")
    for command in ("serve", "chat", "doctor", "mechanic", "pr"):
        assert any(line.startswith(f"  {command} ") for line in lines), command
    assert len(lines) < 30  # one line per command, not argparse's full usage
    assert done.stderr == ""


def test_version_names_the_package_and_the_commit(tmp_path: Path) -> None:
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    from_git = persais(tmp_path, "--version")
    assert from_git.returncode == 0, from_git.stderr
    assert from_git.stdout.startswith("persais ")
    assert f"(commit {head})" in from_git.stdout

    from_image = persais(tmp_path, "--version", PERSAIS_GIT_COMMIT="0123abc")
    assert "(commit 0123abc)" in from_image.stdout


def test_a_broken_configuration_still_has_a_version(tmp_path: Path) -> None:
    done = persais(tmp_path, "--version", PERSAIS_LOG_LEVEL="LOUD")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("persais ")


def test_a_typo_gets_the_nearest_command_in_two_lines(tmp_path: Path) -> None:
    done = persais(tmp_path, "sevre")
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        "persais: unknown command 'sevre'; did you mean 'serve'?",
        "'persais -h' lists what it takes",
    ]
    nested = persais(tmp_path, "pr", "shwo", "1")
    assert nested.returncode == 2
    assert "persais pr: unknown command 'shwo'; did you mean 'show'?" in nested.stderr
    choice = persais(tmp_path, "mechanic", "x", "--kind", "agnet")
    assert "unknown choice 'agnet'; did you mean 'agent'?" in choice.stderr


def test_a_mistyped_option_gets_the_nearest_option(tmp_path: Path) -> None:
    done = persais(tmp_path, "mechanic", "x", "--tempalte-only")
    assert done.returncode == 2
    assert done.stderr.splitlines()[0] == (
        "persais: unknown option '--tempalte-only'; did you mean '--template-only'?"
    )
    stray = persais(tmp_path, "pr", "list", "extra")
    assert stray.stderr.splitlines()[0] == "persais: unrecognized arguments: extra"


def test_nothing_near_a_typo_is_said_plainly(tmp_path: Path) -> None:
    done = persais(tmp_path, "xyzzy")
    assert done.returncode == 2
    assert done.stderr.splitlines()[0] == "persais: unknown command 'xyzzy'"


def test_every_command_and_flag_has_help_text() -> None:
    missing: list[str] = []

    def walk(parser: argparse.ArgumentParser, path: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                helps = {choice.dest: choice.help for choice in action._choices_actions}
                for name, sub in action.choices.items():
                    if not helps.get(name):
                        missing.append(f"{path} {name}")
                    walk(sub, f"{path} {name}")
            elif not isinstance(action, argparse._HelpAction) and not action.help:
                missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")

    walk(_parser(), "persais")
    assert missing == []


def test_one_shot_commands_log_warnings_only_unless_verbose(
    tmp_path: Path, postgres: support_postgres.TestPostgres
) -> None:
    """`persais migrate` on an empty database: its stdout is the migrations it applied; the
    INFO lines about them reach stderr only with `-v`."""
    quiet = persais(tmp_path, "migrate", DATABASE_URL=_empty_database(postgres),
                    PERSAIS_LOG_LEVEL="INFO")  # fmt: skip
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout.startswith("applied ")
    assert " INFO " not in quiet.stdout + quiet.stderr

    loud = persais(tmp_path, "-v", "migrate", DATABASE_URL=_empty_database(postgres),
                   PERSAIS_LOG_LEVEL="INFO")  # fmt: skip
    assert loud.returncode == 0, loud.stderr
    assert loud.stdout == quiet.stdout  # logs never reach stdout
    assert "INFO persais: applied migration" in loud.stderr


def test_template_only_without_a_name_it_can_read_says_what_to_do(tmp_path: Path) -> None:
    done = persais(tmp_path, "mechanic", "Say hello", "--template-only")
    assert done.returncode == 2
    assert done.stderr.strip() == (
        'persais: --template-only: name what to build ("Create an agent Echo ...") or pass --name'
    )


def _empty_database(postgres: support_postgres.TestPostgres) -> str:
    name = f"cli_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres.conninfo_for("postgres"), autocommit=True) as conn:
        conn.execute(pgsql.SQL("CREATE DATABASE {}").format(pgsql.Identifier(name)))
    return postgres.conninfo_for(name)
