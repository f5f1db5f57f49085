"""`referral rules ...`: check, test, eval, diff, compile, fmt, render, catalog, precommit."""

from __future__ import annotations

import json
import sys
import time
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import click

from compiler.dot import FORMATS, Format, render_program
from compiler.junit import examples_junit
from compiler.precommit import precommit as precommit_files
from compiler.text import format_program, reformat_files, unified_diff
from compiler.trace import format_trace
from dsl.codec import dumps
from dsl.errors import RuleError, Sources
from dsl.evaluate import compile_program
from dsl.examples import describe_rewards, run_examples
from dsl.parser import parse_partial
from dsl.program import LoadedProgram, load_program, parse_files, program_files
from referral.cli.common import (
    ChecksFailed,
    CommandInputError,
    LazyGroup,
    as_of_date,
    currency_option,
    load_rules,
    paths_argument,
    strict_option,
)
from referral.cli.formatting import check_json, format_report, github_annotation
from referral.cli.output import atomic_file
from settlement.impact import diff_programs

CHECK_FORMATS = ("text", "json", "github")
STDIN = "<stdin>"  # the file name diagnostics give to `rules fmt -`'s input


@click.group(cls=LazyGroup, lazy={"draft": "referral.cli.draft:draft_cmd"})
def rules() -> None:
    """Check, compile, format, render and test rule programs."""


@rules.command()
@paths_argument
@strict_option
@click.option("--format", "output", type=click.Choice(CHECK_FORMATS), default="text",
              show_default=True,
              help="text: file:line:col lines on stderr; json: one object on stdout; "
                   "github: GitHub Actions annotations (::error file=...,line=...::).")
def check(paths: tuple[Path, ...], strict: bool, output: str) -> None:
    """Parse and validate a program; print every error and warning."""
    if output == "text":
        loaded = load_rules(paths, strict=strict)
        click.echo(_check_summary(loaded))
        return
    loaded_or_none: LoadedProgram | None = None
    try:
        loaded_or_none = load_program(paths, strict=strict)
        diagnostics = loaded_or_none.warnings
    except RuleError as e:
        diagnostics = e.diagnostics
    if output == "json":
        program = loaded_or_none.program if loaded_or_none else None
        files = len(loaded_or_none.files) if loaded_or_none else len(program_files(paths))
        report = check_json(diagnostics, program, files)
        click.echo(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        for d in diagnostics:
            click.echo(github_annotation(d))
        if loaded_or_none is not None:
            click.echo(_check_summary(loaded_or_none))
    if loaded_or_none is None:
        raise ChecksFailed()


def _check_summary(loaded: LoadedProgram) -> str:
    p = loaded.program
    return (f"OK: {len(p.rules)} rules, {len(p.definitions)} definitions, "
            f"{len(p.examples)} examples in {len(loaded.files)} files")


@rules.command("test")
@paths_argument
@currency_option
@click.option("--junit", "junit_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the results as JUnit XML to FILE (for CI test reports).")
def test_examples(paths: tuple[Path, ...], currency: str | None, junit_file: Path | None) -> None:
    """Run every EXAMPLE (as written, and as records hold its values); exit 1 if any fails."""
    started = time.perf_counter()
    results = run_examples(load_rules(paths, currency=currency).program)
    seconds = time.perf_counter() - started
    failed = 0
    for r in results:
        where = f" ({r.source})" if r.source else ""
        if r.passed:
            click.echo(f"PASS {r.name}{where}")
            continue
        failed += 1
        click.echo(f"FAIL {r.name}{where}")
        if r.form:
            click.echo(f"  form:     {r.form} (money as minor units, dates as ISO text)"
                       if r.form == "record" else f"  form:     {r.form}")
        click.echo(f"  expected: {describe_rewards(r.expected)}")
        if r.error:
            click.echo(f"  error:    {r.error}")
        else:
            click.echo(f"  actual:   {describe_rewards(r.actual)}")
    click.echo(f"{len(results) - failed} passed, {failed} failed")
    if junit_file is not None:
        suite = " ".join(str(p) for p in paths)
        try:
            junit_file.write_text(examples_junit(results, suite, seconds), encoding="utf-8")
        except OSError as e:
            raise CommandInputError(f"{junit_file}: cannot write: {e.strerror or e}") from e
    if failed:
        raise ChecksFailed()


def _read_context(path: Path) -> Any:
    try:
        # Decimal, never float: money and percentages stay exact.
        return json.loads(path.read_text(encoding="utf-8"), parse_float=Decimal)
    except (OSError, json.JSONDecodeError) as e:
        raise CommandInputError(f"{path}: cannot read context: {e}") from e


@rules.command("eval")
@paths_argument
@click.option("--context", "context_file", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A JSON file with the referral context.")
@currency_option
@click.option("--json", "as_json", is_flag=True, help="Print the evaluation as JSON.")
def eval_context(
    paths: tuple[Path, ...], context_file: Path, currency: str | None, as_json: bool
) -> None:
    """Evaluate one context and print the trace of every condition."""
    loaded = load_rules(paths, currency=currency)
    context = _read_context(context_file)
    if not isinstance(context, dict):
        raise CommandInputError(f"{context_file}: the context must be a JSON object")
    compiled = compile_program(loaded.program, default_currency=loaded.program.default_currency())
    evaluation = compiled.evaluate(context, trace=True)
    if as_json:
        click.echo(json.dumps(evaluation.to_json(), indent=2, ensure_ascii=False))
    else:
        click.echo(format_trace(evaluation))


@rules.command("diff")
@click.argument("old_path", type=click.Path(exists=True, path_type=Path))
@click.argument("new_path", type=click.Path(exists=True, path_type=Path))
@click.option("--records", "records_path", required=True,
              help="JSON Lines or CSV file of referral records to settle with both versions.")
@click.option("--as-of", callback=as_of_date, help="Settlement date for both (default: today).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@click.option("--show", type=click.IntRange(min=0), default=20, show_default=True,
              help="Changed referrals listed per rule (text output).")
@currency_option
def diff(
    old_path: Path, new_path: Path, records_path: str, as_of: date, as_json: bool, show: int,
    currency: str | None,
) -> None:
    """What NEW_PATH's rules would pay differently from OLD_PATH's on the same records.

    Both versions are settled into private throwaway databases (never --db);
    exit 0 whatever changed, 1 when the rules or the records file are invalid.
    """
    try:
        with open(records_path, encoding="utf-8"):
            pass
    except OSError as e:
        raise CommandInputError(f"{records_path}: cannot read records: {e.strerror or e}") from e
    # both versions' errors
    old, new = _load_or_none(old_path, currency), _load_or_none(new_path, currency)
    if old is None or new is None:
        raise ChecksFailed()
    try:
        report = diff_programs(old.program, new.program, records_path, as_of)
    except OSError as e:
        raise CommandInputError(f"{records_path}: cannot read records: {e}") from e
    if as_json:
        click.echo(json.dumps(report.as_json(), indent=2, ensure_ascii=False))
    else:
        click.echo(f"rules diff {old_path} -> {new_path}")
        click.echo(format_report(report, shown=show))


def _load_or_none(path: Path, currency: str | None = None) -> LoadedProgram | None:
    """``load_rules`` that reports the errors and returns None instead of stopping."""
    try:
        return load_rules((path,), currency=currency)
    except ChecksFailed:
        return None


@rules.command("precommit")
@click.argument("files", nargs=-1, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--program", "programs", multiple=True,
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A program directory (repeatable); default: [tool.referral] programs in "
                   "pyproject.toml, else the top directory of each file's rule directories.")
def precommit(files: tuple[Path, ...], programs: tuple[Path, ...]) -> None:
    """Check and test whole programs (the pre-commit hook); exit 1 on any problem.

    Without FILES every program of the repository is checked (so deleting a file
    that others use is caught); FILES are also checked for canonical formatting.
    """
    result = precommit_files(files, programs)
    for line, diagnostic in result.lines:
        click.echo(line, err=diagnostic)
    if not result.ok:
        raise ChecksFailed()


@rules.command("compile")
@paths_argument
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the JSON model to FILE instead of standard output.")
@strict_option
def compile_cmd(paths: tuple[Path, ...], output: Path | None, strict: bool) -> None:
    """Print the JSON rule model (schema_version 1) of a program."""
    loaded = load_rules(paths, strict=strict)
    text = dumps(loaded.program)
    if output is None:
        click.echo(text, nl=False)
        return
    with atomic_file(output) as fh:
        fh.write(text)
    click.echo(f"wrote {output} ({len(loaded.program.rules)} rules)")


@rules.command("fmt")
@click.argument("paths", nargs=-1, required=True,
                type=click.Path(exists=True, allow_dash=True, path_type=Path))
@click.option("--check", is_flag=True,
              help="Write nothing; list the files that would change and exit 1 if any.")
@click.option("--diff", "show_diff", is_flag=True,
              help="Write nothing; print a unified diff of each change and exit 1 if any.")
def fmt(paths: tuple[Path, ...], check: bool, show_diff: bool) -> None:
    """Rewrite .rule files in the canonical layout (``-``: standard input to standard output).

    Only the syntax of each file matters: a file may use phrases DEFINEd in files
    not given.  A file that does not parse leaves every file unwritten.
    """
    if Path("-") in paths:
        if len(paths) > 1:
            raise click.UsageError("'-' (standard input) cannot be combined with other paths")
        _fmt_stdin(check, show_diff)
        return
    parsed = parse_files(paths)
    if parsed.diagnostics:
        for d in parsed.syntax_errors():
            click.echo(d.line(), err=True)
        raise ChecksFailed()
    changed = reformat_files(parsed.files)
    for path, text in changed.items():
        if show_diff:
            click.echo(unified_diff(path.read_text(encoding="utf-8"), text, str(path)), nl=False)
        elif check:
            click.echo(f"would reformat {path}")
        else:
            path.write_text(text, encoding="utf-8")
            click.echo(f"reformatted {path}")
    if (check or show_diff) and changed:
        raise ChecksFailed()


def _fmt_stdin(check: bool, show_diff: bool) -> None:
    """``rules fmt -``: the canonical text on stdout (an editor's format-on-save)."""
    try:
        text = sys.stdin.buffer.read().decode("utf-8")
    except UnicodeDecodeError as e:
        raise CommandInputError(f"{STDIN}: not UTF-8 text: {e.reason}") from e
    program, diagnostics = parse_partial(text, STDIN)
    if diagnostics:
        sources = Sources({STDIN: text})
        for d in diagnostics:
            click.echo(sources.attach(d).line(), err=True)
        raise ChecksFailed()
    canonical = format_program(program)
    if show_diff:
        click.echo(unified_diff(text, canonical, STDIN), nl=False)
    elif check:
        if canonical != text:
            click.echo(f"would reformat {STDIN}")
    else:
        click.echo(canonical, nl=False)
    if (check or show_diff) and canonical != text:
        raise ChecksFailed()


@rules.command("render")
@paths_argument
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="dot", show_default=True,
              help="dot needs nothing; svg and png need Graphviz's dot program.")
@click.option("-o", "--output", "outdir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("diagrams"), show_default=True, help="Directory for the diagrams.")
def render(paths: tuple[Path, ...], fmt: Format, outdir: Path) -> None:
    """Write one diagram per rule (<rule id>.<format>)."""
    for path in render_program(load_rules(paths).program, fmt, outdir):
        click.echo(str(path))


@rules.command("catalog")
@paths_argument
@click.option("-o", "--output", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("site"), show_default=True, help="Directory for the site.")
@strict_option
def catalog(paths: tuple[Path, ...], out_dir: Path, strict: bool) -> None:
    """Write the rules as a static HTML site (needs Graphviz's dot).

    index.html lists every rule; rule/<id>.html shows its source, its diagram, the
    path each of its EXAMPLEs takes through it, and its JSON model.
    """
    from compiler.catalog import build_catalog  # Jinja2 and Graphviz: only for this command

    program = load_rules(paths, strict=strict).program
    result = build_catalog(program, out_dir)
    click.echo(
        f"wrote {result.index} ({len(result.pages)} rules, {len(program.examples)} examples: "
        f"{result.examples_passed} passed, {result.examples_failed} failed)"
    )
