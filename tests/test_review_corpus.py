"""The labelled review corpus (`bench/review_corpus/`, issue 20) cannot rot: every case
loads and applies to its upstream file, its label is well formed and points at a line of
the diff, the committed cases are exactly what `make_corpus.py` writes from its recipes, and
the static stage still finds the planted defect on a few samples (and nothing on a clean
one). The figures themselves come from `bench/review_corpus.py`, not from here."""

from __future__ import annotations

import asyncio
import importlib.util
import re
import sys
import tomllib
from types import ModuleType

import pytest

from bench.review_corpus import (
    CORPUS,
    Case,
    apply_patch,
    case_dirs,
    load_cases,
    project_ruff,
    static_stage,
)

RULE = r"^(?:[A-Z]{1,3}\d{3,4}|secret)$"


def make_corpus() -> ModuleType:
    """bench/review_corpus/make_corpus.py, a script beside the cases (not a package)."""
    spec = importlib.util.spec_from_file_location("make_corpus", CORPUS / "make_corpus.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


@pytest.fixture(scope="module")
def cases() -> dict[str, Case]:
    return {case.id: case for case in load_cases()}


def test_the_corpus_has_forty_cases_or_more_half_of_them_defective(
    cases: dict[str, Case],
) -> None:
    defective = [c for c in cases.values() if c.label.defect]
    assert len(cases) >= 40
    assert len(defective) * 2 == len(cases), f"{len(defective)} defective of {len(cases)}"


def test_every_label_is_well_formed_and_names_a_line_on_the_diff(cases: dict[str, Case]) -> None:
    for folder in case_dirs():
        meta = tomllib.loads((folder / "case.toml").read_text(encoding="utf-8"))
        assert meta["id"] == folder.name
        assert meta["title"].strip(), folder.name
        assert isinstance(meta["body"], str), folder.name
        assert (CORPUS / "upstream" / meta["upstream"]).is_dir(), meta["upstream"]
        case = cases[folder.name]
        assert case.diff.files, f"{case.id}: no file changed"
        if not meta["defect"]:
            assert not {"rule", "kind", "path", "line", "why"} & meta.keys(), case.id
            continue
        assert re.match(RULE, meta["rule"]), f"{case.id}: rule {meta['rule']!r}"
        assert meta["kind"].strip(), case.id
        assert meta["why"].strip(), case.id
        assert isinstance(meta["reviewer_rules"], bool), case.id
        file = case.diff.get(meta["path"])
        assert file is not None, f"{case.id}: {meta['path']} is not in the diff"
        # On the diff: added, or (a rename that missed a line) context a comment may sit on.
        assert file.commentable(meta["line"]), f"{case.id}: line {meta['line']} is off the diff"
        assert "«defect»" not in case.heads[meta["path"]], f"{case.id}: the marker was left in"


def test_each_upstream_project_keeps_its_license() -> None:
    for project in (CORPUS / "upstream").iterdir():
        licenses = [p.name for p in project.iterdir() if p.name.upper().startswith("LICENSE")]
        assert licenses, f"{project.name} has no license file"


def test_each_projects_own_ruff_configuration_is_usable() -> None:
    for project in (CORPUS / "upstream").iterdir():
        config = project_ruff(project.name)
        assert config is not None, f"{project.name}: no [tool.ruff]"
        assert not config.problem, f"{project.name}: {config.problem}"
        assert config.settings.get("lint", {}).get("select"), project.name


def test_the_committed_cases_are_what_make_corpus_writes() -> None:
    module = make_corpus()
    built = module.build()
    committed = module.on_disk()
    assert sorted(built) == sorted(committed), "run bench/review_corpus/make_corpus.py"
    stale = [path for path in built if built[path] != committed[path]]
    assert not stale, f"stale (run bench/review_corpus/make_corpus.py): {stale}"


def test_a_patch_that_does_not_fit_its_base_is_refused() -> None:
    patch = "@@ -1,2 +1,2 @@\n first\n-second\n+2nd\n"
    assert apply_patch("first\nsecond\nthird\n", patch) == "first\n2nd\nthird\n"
    with pytest.raises(ValueError, match="does not apply at line 2"):
        apply_patch("first\nother\nthird\n", patch)


@pytest.mark.parametrize(
    "case_id",
    ["01-f821-measure-table-rename", "05-b006-cmp-using-requirements", "19-secret-stats-api-key"],
)
def test_the_static_stage_finds_the_planted_defect_inline(
    cases: dict[str, Case], case_id: str
) -> None:
    result = asyncio.run(static_stage(cases[case_id]))
    label = cases[case_id].label
    assert result.found_inline, f"{case_id}: {[(f.rule, f.line) for f in result.findings]}"
    assert result.rule_agrees, [(f.rule, f.line) for f in result.hits]
    assert not result.false_alarms, [(f.rule, f.line) for f in result.false_alarms]
    assert any(c.path == label.path and c.line == label.line for c in result.pinned.comments)


def test_the_static_stage_says_nothing_on_a_clean_refactor(cases: dict[str, Case]) -> None:
    result = asyncio.run(static_stage(cases["32-clean-close-matches-helper"]))
    assert result.findings == []
    assert result.pinned.comments == []
