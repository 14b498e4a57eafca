"""bootstrap.py on the way to the two commands: it shows how far an install got, and finds
a Python that Aider runs on, or says what to install.

pip is the boundary here: a few lines of Python that print what pip prints stand in for it
(a real install is the whole of `python3 bootstrap.py test`, which CI runs).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bootstrap() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bootstrap", ROOT / "bootstrap.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_pip(lines: list[str], code: int = 0) -> list[str]:
    script = f"import sys\nfor line in {lines!r}: print(line)\nsys.exit({code})"
    return [sys.executable, "-c", script]


def test_an_install_shows_a_count_and_how_long_it_took(
    bootstrap: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    said = [f"Collecting package{i}" for i in range(60)]
    said += ["  Downloading package0.whl", "Installing collected packages: a, b", "Successfully"]
    bootstrap.pip_install(fake_pip(said), ".venv")
    out = capsys.readouterr().out.splitlines()
    assert out[:2] == [
        "bootstrap: .venv: 25 packages found",
        "bootstrap: .venv: 50 packages found",
    ]
    assert out[2] == "bootstrap: .venv: installing 60 packages ..."
    assert out[3].startswith("bootstrap: .venv: ready (60 packages, ")
    assert len(out) == 4  # pip's own hundreds of lines are not repeated


def test_a_failed_install_shows_pips_own_last_lines(
    bootstrap: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    said = ["Collecting aider-chat==9.9", "ERROR: No matching distribution found for aider-chat"]
    with pytest.raises(SystemExit) as stopped:
        bootstrap.pip_install(fake_pip(said, code=1), ".aider-venv")
    assert "installing into .aider-venv failed (pip exit 1)" in str(stopped.value.code)
    assert "ERROR: No matching distribution found" in capsys.readouterr().out


def test_aider_runs_on_this_python_when_it_can(bootstrap: ModuleType) -> None:
    assert bootstrap.aider_python((3, 11)) == sys.executable
    assert bootstrap.aider_python((3, 12)) == sys.executable


def test_on_a_newer_python_a_supported_one_on_the_path_is_found(
    bootstrap: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The name is not trusted: `python3.11` here is asked which version it is."""
    here = sys.version_info[:2]
    assert (3, 10) <= here <= (3, 12), "the tests run on a Python Aider supports"
    (tmp_path / f"python{here[0]}.{here[1]}").symlink_to(sys.executable)
    liar = tmp_path / "python3.12"
    if here != (3, 12):  # a `python3.12` that is really something else is passed over
        liar.write_text("#!/bin/sh\necho 3 13\n")
        liar.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert bootstrap.aider_python((3, 13)) == str(tmp_path / f"python{here[0]}.{here[1]}")


def test_with_no_supported_python_it_says_what_to_install(
    bootstrap: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SystemExit) as stopped:
        bootstrap.aider_python((3, 13))
    said = str(stopped.value.code)
    assert "aider-chat needs Python 3.10-3.12 and this is 3.13" in said
    assert "apt install python3.12 python3.12-venv" in said
    assert "uv python install 3.12" in said
