"""Build the labelled review corpus (issue 20) from `recipes.toml` and the vendored upstream
source in `upstream/`.

    .venv/bin/python bench/review_corpus/make_corpus.py            # write cases/
    .venv/bin/python bench/review_corpus/make_corpus.py --check    # exit 1 if cases/ is stale
    .venv/bin/python bench/review_corpus/make_corpus.py --vendor [--sdists DIR]
                                                    # copy upstream/ again

A recipe is a pull request: text replacements on upstream files (each `old` must occur
exactly once) or new files, a title and a description, and for a defective one the rule a
static tool reports. The defect's line is marked in the recipe's `new` text with `MARK`; the
marker is taken out here, and its line in the head file becomes the label, so a label cannot
drift from the code. Each case is written as `cases/<id>/change.diff` (the pull request's
diff, one `diff --git` section per file, hunks with three lines of context as `git diff`
makes them) and `cases/<id>/case.toml` (the label). The base files stay in `upstream/`,
shared by every case, so a case is a few KB.

Upstream files are stored with a `.txt` suffix: they are someone else's code, and neither
this repository's ruff (`ruff check .`, `ruff format --check .`) nor anything else that
collects `*.py` should read them as ours.

Everything here is deterministic (no clock, no randomness, sorted output): the same recipes
and upstream files give byte-for-byte the same cases, which tests/test_review_corpus.py
checks.
"""

from __future__ import annotations

import argparse
import difflib
import importlib.metadata
import json
import shutil
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
UPSTREAM = HERE / "upstream"
CASES = HERE / "cases"
RECIPES = HERE / "recipes.toml"
MARK = "«defect»"

# What is vendored: distribution, version, its license file (in the installed metadata),
# and {path in the project's own repository: path inside site-packages}.
SOURCES: dict[str, tuple[str, str, str, dict[str, str]]] = {
    "click-8.5.1": ("click", "8.5.1", "LICENSE.txt", {
        "src/click/exceptions.py": "click/exceptions.py",
        "src/click/formatting.py": "click/formatting.py",
        "src/click/globals.py": "click/globals.py",
        "src/click/utils.py": "click/utils.py",
    }),
    "attrs-26.1.0": ("attrs", "26.1.0", "LICENSE", {
        "src/attr/_cmp.py": "attr/_cmp.py",
        "src/attr/_version_info.py": "attr/_version_info.py",
        "src/attr/converters.py": "attr/converters.py",
        "src/attr/filters.py": "attr/filters.py",
        "src/attr/setters.py": "attr/setters.py",
    }),
}  # fmt: skip


@dataclass(frozen=True)
class Defect:
    rule: str  # what a static tool reports: a ruff code, or "secret"
    kind: str
    path: str
    line: int  # in the head file
    why: str
    reviewer_rules: bool  # within what Persais's static stage checks (see the README)


def upstream_text(project: str, path: str) -> str | None:
    file = UPSTREAM / project / (path + ".txt")
    return file.read_text(encoding="utf-8") if file.is_file() else None


def build() -> dict[str, str]:
    """{path relative to cases/: text} for every case, from the recipes."""
    recipes = tomllib.loads(RECIPES.read_text(encoding="utf-8"))["case"]
    out: dict[str, str] = {}
    seen: set[str] = set()
    for number, recipe in enumerate(recipes, start=1):
        case_id = f"{number:02d}-{recipe['slug']}"
        if recipe["slug"] in seen:
            raise ValueError(f"{case_id}: the slug is used twice")
        seen.add(recipe["slug"])
        try:
            diff, defect = _change(recipe)
        except ValueError as exc:
            raise ValueError(f"{case_id}: {exc}") from None
        out[f"{case_id}/change.diff"] = diff
        out[f"{case_id}/case.toml"] = _label(case_id, recipe, defect)
    return out


def _change(recipe: dict[str, Any]) -> tuple[str, Defect | None]:
    project = recipe["upstream"]
    heads: dict[str, tuple[str | None, str]] = {}  # path -> (base, head)
    for edit in recipe["edit"]:
        path = edit["path"]
        base, head = heads.get(path, (upstream_text(project, path), None))
        current = head if head is not None else base
        if "old" in edit:
            if current is None:
                raise ValueError(f"{path} is not in upstream/{project}")
            if current.count(edit["old"]) != 1:
                raise ValueError(f"{path}: an `old` text occurs {current.count(edit['old'])} times")
            head = current.replace(edit["old"], edit["new"])
        else:
            if current is not None:
                raise ValueError(f"{path} exists: a new file may not replace it")
            head = edit["new"]
        heads[path] = (base, head)
    defect = None
    sections = []
    for path, (base, head) in sorted(heads.items()):
        assert head is not None
        head, marked = _unmark(head)
        if marked:
            if defect is not None or "rule" not in recipe:
                raise ValueError("one marked line, and only in a recipe with a `rule`")
            defect = Defect(recipe["rule"], recipe["kind"], path, marked, recipe["why"],
                            recipe.get("reviewer_rules", True))  # fmt: skip
        sections.append(_section(path, base, head))
    if "rule" in recipe and defect is None:
        raise ValueError(f"a defective recipe must mark its line with {MARK}")
    return "".join(sections), defect


def _unmark(text: str) -> tuple[str, int | None]:
    """The text without the marker, and the 1-based line it was on."""
    lines = text.split("\n")
    marked = [n for n, line in enumerate(lines, start=1) if MARK in line]
    if len(marked) > 1:
        raise ValueError("more than one marked line")
    for n in marked:
        lines[n - 1] = lines[n - 1].replace(MARK, "").rstrip()
    return "\n".join(lines), (marked[0] if marked else None)


def _section(path: str, base: str | None, head: str) -> str:
    if not head.endswith("\n"):
        raise ValueError(f"{path}: the new text must end with a newline")
    hunks = difflib.unified_diff(
        (base or "").splitlines(keepends=True),
        head.splitlines(keepends=True),
        "/dev/null" if base is None else f"a/{path}",
        f"b/{path}",
        n=3,
    )
    header = f"diff --git a/{path} b/{path}\n" + ("new file mode 100644\n" if base is None else "")
    body = "".join(hunks)
    if not body:
        raise ValueError(f"{path}: the edit changes nothing")
    return header + body


def _label(case_id: str, recipe: dict[str, Any], defect: Defect | None) -> str:
    def q(value: str) -> str:  # a TOML basic string (JSON's escapes are TOML's)
        return json.dumps(value, ensure_ascii=False)

    lines = [
        f"id = {q(case_id)}",
        f"upstream = {q(recipe['upstream'])}",
        f"title = {q(recipe['title'])}",
        f"body = {q(recipe['body'].strip())}",
        f"defect = {'true' if defect else 'false'}",
    ]
    if defect is not None:
        lines += [
            f"rule = {q(defect.rule)}",
            f"kind = {q(defect.kind)}",
            f"path = {q(defect.path)}",
            f"line = {defect.line}",
            f"why = {q(defect.why.strip())}",
            f"reviewer_rules = {'true' if defect.reviewer_rules else 'false'}",
        ]
    return "\n".join(lines) + "\n"


def write(cases: dict[str, str]) -> None:
    if CASES.exists():
        shutil.rmtree(CASES)
    for relative, text in sorted(cases.items()):
        target = CASES / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")


def on_disk() -> dict[str, str]:
    if not CASES.is_dir():
        return {}
    return {
        p.relative_to(CASES).as_posix(): p.read_text(encoding="utf-8")
        for p in sorted(CASES.rglob("*"))
        if p.is_file()
    }


def vendor(sdists: Path | None = None) -> None:
    """Copy the upstream files from the installed distributions (the versions pinned above:
    another version would change every case, so it is refused), and each project's
    `pyproject.toml` (its ruff configuration) from `sdists`, a folder where the source
    distributions are unpacked (`pip download --no-deps --no-binary :all: click==8.5.1`;
    wheels do not carry it)."""
    for project, (dist, version, license_name, files) in SOURCES.items():
        installed = importlib.metadata.distribution(dist)
        if installed.version != version:
            sys.exit(f"{dist} {installed.version} is installed; the corpus is built on {version}")
        target = UPSTREAM / project
        kept = target / "pyproject.toml.txt"
        pyproject = kept.read_bytes() if kept.is_file() else None
        if target.exists():
            shutil.rmtree(target)
        license_file = installed.locate_file(f"{dist}-{version}.dist-info/licenses/{license_name}")
        target.mkdir(parents=True)
        shutil.copyfile(str(license_file), target / license_name)
        for ours, theirs in files.items():
            (target / (ours + ".txt")).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(str(installed.locate_file(theirs)), target / (ours + ".txt"))
        unpacked = sdists / f"{dist}-{version}" / "pyproject.toml" if sdists else None
        if unpacked is not None and unpacked.is_file():
            shutil.copyfile(unpacked, kept)
        elif pyproject is not None:
            kept.write_bytes(pyproject)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if cases/ is stale")
    parser.add_argument("--vendor", action="store_true", help="copy upstream/ again first")
    parser.add_argument(
        "--sdists", type=Path, help="with --vendor: where the source distributions are unpacked"
    )
    opts = parser.parse_args()
    if opts.vendor:
        vendor(opts.sdists)
    cases = build()
    if opts.check:
        stale = cases != on_disk()
        print("cases/ is stale: run make_corpus.py" if stale else "cases/ is up to date")
        sys.exit(1 if stale else 0)
    write(cases)
    print(f"wrote {len(cases) // 2} cases to {CASES.relative_to(HERE.parent.parent)}")


if __name__ == "__main__":
    main()
