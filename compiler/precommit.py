"""The pre-commit check: load whole programs, check them and run their examples.

Why whole programs: a file may use phrases DEFINEd in another file of its
program, so a changed file cannot be checked alone, and deleting a file that
others depend on changes no ``.rule`` file left in the commit.  So the hook
(``referral-rules-check``) is given no file names: it checks every program of
the repository.  The programs are ``--program`` directories, else the
``programs`` list of ``[tool.referral]`` in ``pyproject.toml``, else found from
the repository's ``.rule`` files: each file belongs to the top directory of the
chain of directories holding ``.rule`` files above it (``dsl.program.program_root``:
``rules/promo/x.rule`` belongs to ``rules/`` when ``rules/`` holds rule files, as
``rules check rules/`` sees it).  Files named on the command line are also
checked for canonical formatting (formatting itself is the ``referral-rules-fmt``
hook's job).
"""

from __future__ import annotations

import subprocess
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from compiler.text import reformat_files
from dsl.errors import ReferralError, RuleError
from dsl.examples import describe_rewards, run_examples
from dsl.program import load_program, program_root

CONFIG_FILE = "pyproject.toml"


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


def configured_programs(directory: Path) -> list[Path]:
    """``[tool.referral] programs = ["rules/"]`` in ``directory/pyproject.toml``, if any."""
    config = directory / CONFIG_FILE
    if not config.is_file():
        return []
    try:
        data = tomllib.loads(config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ReferralError(f"{config}: cannot read: {e}") from e
    programs = data.get("tool", {}).get("referral", {}).get("programs", [])
    if not isinstance(programs, list) or not all(isinstance(p, str) for p in programs):
        raise ReferralError(f"{config}: [tool.referral] programs must be a list of directories")
    missing = [p for p in programs if not (directory / p).is_dir()]
    if missing:
        raise ReferralError(f"{config}: [tool.referral] programs: no such directory: "
                            + ", ".join(missing))
    return [directory / p for p in programs]


def repository_rule_files(directory: Path) -> list[Path]:
    """The ``.rule`` files of the git repository at ``directory`` (what the commit holds:
    pre-commit stashes unstaged changes first), else every one below it."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z", "--", "*.rule"], cwd=directory,
                                capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        found = directory.rglob("*.rule")
        return sorted(f for f in found
                      if not any(part.startswith(".") for part in f.relative_to(directory).parts))
    names = (n for n in listed.decode("utf-8", "surrogateescape").split("\0") if n)
    return sorted(f for f in (directory / n for n in names) if f.is_file())


def program_roots(
    files: Sequence[Path], programs: Sequence[Path] = ()
) -> dict[Path, list[Path]]:
    """Program directory -> the given files in it: the innermost ``programs`` entry
    holding the file, else ``program_root`` (the top of its chain of rule directories)."""
    innermost_first = sorted(programs, key=lambda p: len(p.resolve().parts), reverse=True)
    out: dict[Path, list[Path]] = {}
    for f in files:
        full = f.resolve()
        root = next((p for p in innermost_first if full.is_relative_to(p.resolve())), None)
        if root is None:
            root = _relative(program_root(f), f)
        out.setdefault(root, []).append(f)
    return dict(sorted(out.items()))


def _relative(root: Path, like: Path) -> Path:
    """``root`` written as ``like`` is (relative paths stay relative to the cwd)."""
    if like.is_absolute():
        return root
    try:
        return root.relative_to(Path.cwd())
    except ValueError:
        return root


def _outermost(roots: Sequence[Path]) -> list[Path]:
    """The roots not inside another (``load_program`` reads directories recursively)."""
    full = {r: r.resolve() for r in roots}
    return sorted(r for r in roots
                  if not any(o != full[r] and full[r].is_relative_to(o) for o in full.values()))


def precommit(
    files: Sequence[Path], programs: Sequence[Path] = (), *, directory: Path | None = None
) -> PrecommitResult:
    """Check and test the programs of ``files`` and format-check ``files``; with no
    ``files``, every program of the repository at ``directory`` (default: the cwd)."""
    result = PrecommitResult()
    roots = program_roots(files, programs)
    if not files:
        here = directory or Path.cwd()
        programs = list(programs) or configured_programs(here)
        found = programs or list(program_roots(repository_rule_files(here)))
        # Run from the repository (as pre-commit does), names stay relative to it.
        local = here.resolve() == Path.cwd().resolve()
        roots = {(_relative(root, Path()) if local else root): [] for root in _outermost(found)}
        if not roots:
            result.lines.append((f"{here}: no .rule files", False))
    for root, changed in roots.items():
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
