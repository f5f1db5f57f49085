"""compiler.ide without the protocol: no position of a real or half-typed program breaks it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from compiler.ide import Workspace, check_texts
from dsl.program import load_program

ROOT = Path(__file__).resolve().parents[1]
RULES = sorted((ROOT / "rules").glob("*.rule"))


@pytest.fixture
def program(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "rules", tmp_path / "rules")
    return tmp_path / "rules"


def test_ide_check_texts_equals_load_program_on_the_example_program() -> None:
    texts = {p: p.read_text(encoding="utf-8") for p in RULES}
    analysis = check_texts(ROOT / "rules", texts)
    loaded = load_program([ROOT / "rules"])
    assert analysis.resolved == loaded.program
    assert analysis.diagnostics == loaded.warnings == []


@pytest.mark.parametrize("name", [p.name for p in RULES])
def test_ide_every_position_answers(program: Path, name: str) -> None:
    path = program / name
    text = path.read_text(encoding="utf-8")
    ws = Workspace()
    for line_number, line in enumerate(text.splitlines(), start=1):
        for column in range(1, len(line) + 2, 11):
            ws.completions(path, line_number, column)
            ws.hover(path, line_number, column)
            ws.definition(path, line_number, column)
            ws.references(path, line_number, column)


@pytest.mark.parametrize("name", [p.name for p in RULES])
def test_ide_every_prefix_of_a_file_completes(program: Path, name: str) -> None:
    """A file cut anywhere (as while typing it) still gets diagnostics and completions."""
    path = program / name
    text = path.read_text(encoding="utf-8")
    ws = Workspace()
    for cut in range(0, len(text), 37):
        prefix = text[:cut]
        ws.open(path, prefix)
        lines = prefix.split("\n")
        ws.completions(path, len(lines), len(lines[-1]) + 1)
        assert ws.analysis(path).texts[path] == prefix


def test_ide_buffers_override_the_disk(program: Path) -> None:
    ws = Workspace()
    vocabulary = program / "vocabulary.rule"
    assert ws.analysis(vocabulary).errors == []
    ws.open(vocabulary, "")
    undefined = {d.message for d in ws.analysis(vocabulary).errors}
    assert 'phrase "referred user subscribes" is not defined' in undefined
    ws.close(vocabulary)
    assert ws.analysis(vocabulary).errors == []


def test_ide_subdirectory_belongs_to_the_parent_program(program: Path) -> None:
    promo = program / "promo"
    promo.mkdir()
    (promo / "promo.rule").write_text(
        "RULE promo IF referred user subscribes THEN ISSUE ₹5\n", encoding="utf-8")
    ws = Workspace()
    assert ws.root(promo / "promo.rule") == program.absolute()
    assert ws.analysis(promo / "promo.rule").errors == []
    assert Workspace(programs=[promo]).analysis(promo / "promo.rule").errors != []
