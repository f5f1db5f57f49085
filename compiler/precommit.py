"""The pre-commit hook's work: check, fmt --check and test for the ``.rule`` files of a commit.

Why whole programs: a file may use phrases DEFINEd in another file of its
program, so a changed file cannot be checked alone.  Each file belongs to the
innermost given program directory holding it (``--program``), else to its own
directory; every such program is loaded whole, its examples run, and the
changed files themselves are checked for canonical formatting.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from compiler.text import reformat_files
from dsl.errors import RuleError
from dsl.examples import describe_rewards, run_examples
from dsl.program import load_program


@dataclass
class PrecommitResult:
    """What the hook prints, in order, and whether the commit may go on.

    ``lines`` are (text, is_diagnostic): errors and warnings go to stderr,
    the per-program summaries to stdout.
    """

    ok: bool = True
    lines: list[tuple[str, bool]] = field(default_factory=list)

    def fail(self, line: str) -> None:
        self.ok = False
        self.lines.append((line, True))


def program_roots(
    files: Sequence[Path], programs: Sequence[Path] = ()
) -> dict[Path, list[Path]]:
    """Program directory -> the given files in it (innermost ``programs`` entry, else parent)."""
    innermost_first = sorted(programs, key=lambda p: len(p.resolve().parts), reverse=True)
    out: dict[Path, list[Path]] = {}
    for f in files:
        full = f.resolve()
        root = next((p for p in innermost_first if full.is_relative_to(p.resolve())), f.parent)
        out.setdefault(root, []).append(f)
    return dict(sorted(out.items()))


def precommit(files: Sequence[Path], programs: Sequence[Path] = ()) -> PrecommitResult:
    """Check, format-check and test every program the ``files`` belong to."""
    result = PrecommitResult()
    for root, changed in program_roots(files, programs).items():
        try:
            loaded = load_program([root])
        except RuleError as e:
            for d in e.diagnostics:
                result.fail(d.line())
            continue
        result.lines.extend((w.line(), True) for w in loaded.warnings)
        wanted = {f.resolve() for f in changed}
        mine = {p: prog for p, prog in loaded.files.items() if p.resolve() in wanted}
        for path in reformat_files(mine):
            result.fail(f"{path}: would reformat (run `referral rules fmt {path}`)")
        examples = run_examples(loaded.program)
        for r in examples:
            if r.passed:
                continue
            where = f"{r.source}: " if r.source else f"{root}: "
            got = r.error if r.error else f"got {describe_rewards(r.actual)}"
            result.fail(f'{where}error: example "{r.name}" failed: expected '
                        f"{describe_rewards(r.expected)}, {got}")
        passed = sum(r.passed for r in examples)
        result.lines.append((f"{root}: {len(loaded.program.rules)} rules, "
                             f"{passed}/{len(examples)} examples passed", False))
    return result
