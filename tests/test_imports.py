"""The package layout as a test: no import cycle inside ``dsl``.

Every import statement counts, also those inside functions and under
``TYPE_CHECKING``: a lazy import that closes a cycle is still a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(package: str) -> dict[str, set[str]]:
    """Module -> the modules of ``package`` it imports (``from a import b`` counts
    ``a.b`` when that is a module, else ``a``)."""
    paths = {module_name(p): p for p in (ROOT / package).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        found: set[str] = set()
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = name.split(".")[: len(name.split(".")) - node.level + is_package]
                    base = ".".join([*anchor, *([base] if base else [])])
                found.add(base)
                found.update(f"{base}.{a.name}" for a in node.names)
        graph[name] = {m for m in found if m in paths and m != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import path that leads from a module back to itself (one per module)."""
    out: list[list[str]] = []
    for start in sorted(graph):
        stack = [(start, [start])]
        seen: set[str] = set()
        while stack:
            node, path = stack.pop()
            for nxt in sorted(graph[node]):
                if nxt == start:
                    out.append([*path, start])
                    stack.clear()
                    break
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*path, nxt]))
    return out


def test_dsl_has_no_import_cycle() -> None:
    assert cycles(imports("dsl")) == []


def test_program_and_validate_do_not_import_each_other() -> None:
    graph = imports("dsl")
    assert "dsl.validate" in graph["dsl.program"]
    assert "dsl.program" not in graph["dsl.validate"]


def test_cycle_finder_sees_a_lazy_import() -> None:
    assert cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b", "a"], ["b", "a", "b"]]


def _project_imports(package: str) -> set[str]:
    """Top-level project packages that ``package``'s modules import (lazy imports too)."""
    found: set[str] = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.add(node.module.split(".")[0])
    return found & {"dsl", "compiler", "settlement", "referral", "grammar"}


def test_data_flows_one_way() -> None:
    """text -> model -> (diagram | evaluation -> ledger): dsl below everything, settlement never
    reaching for compiler, nothing below referral importing it."""
    assert _project_imports("dsl") <= {"dsl", "grammar"}
    assert "compiler" not in _project_imports("settlement")
    assert "referral" not in _project_imports("settlement") | _project_imports("compiler")


def test_importing_settlement_loads_no_compiler_module() -> None:
    import subprocess
    import sys

    code = ("import sys, settlement.batch, settlement.impact, settlement.ledger;"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'compiler'))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "[]"
