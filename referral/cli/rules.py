"""`referral rules ...`: check, test, eval, diff (compile, fmt, render: referral.cli.compile)."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import click

from compiler.precommit import precommit as precommit_files
from dsl.evaluate import Evaluation, compile_program
from dsl.examples import describe_rewards, run_examples
from referral.cli.common import (
    EXIT_INVALID,
    CliError,
    as_of_date,
    handle_errors,
    load_rules,
    paths_argument,
)
from settlement.impact import diff_programs, format_report


@click.group()
def rules() -> None:
    """Check, compile, format, render and test rule programs."""


@rules.command()
@paths_argument
@click.option("--strict", is_flag=True, help="Treat warnings as errors.")
@handle_errors
def check(paths: tuple[Path, ...], strict: bool) -> None:
    """Parse and validate a program; print every error and warning."""
    loaded = load_rules(paths, strict=strict)
    p = loaded.program
    click.echo(
        f"OK: {len(p.rules)} rules, {len(p.definitions)} definitions, "
        f"{len(p.examples)} examples in {len(loaded.files)} files"
    )


@rules.command("test")
@paths_argument
@handle_errors
def test_examples(paths: tuple[Path, ...]) -> None:
    """Run every EXAMPLE; exit 1 if any fails."""
    loaded = load_rules(paths)
    results = run_examples(loaded.program)
    failed = 0
    for r in results:
        where = f" ({r.source})" if r.source else ""
        if r.passed:
            click.echo(f"PASS {r.name}{where}")
            continue
        failed += 1
        click.echo(f"FAIL {r.name}{where}")
        click.echo(f"  expected: {describe_rewards(r.expected)}")
        if r.error:
            click.echo(f"  error:    {r.error}")
        else:
            click.echo(f"  actual:   {describe_rewards(r.actual)}")
    click.echo(f"{len(results) - failed} passed, {failed} failed")
    if failed:
        raise SystemExit(EXIT_INVALID)


def _read_context(path: Path) -> Any:
    try:
        # Decimal, never float: money and percentages stay exact.
        return json.loads(path.read_text(encoding="utf-8"), parse_float=Decimal)
    except (OSError, json.JSONDecodeError) as e:
        raise CliError(f"{path}: cannot read context: {e}") from e


def format_trace(evaluation: Evaluation) -> str:
    """The evaluation as indented text: each rule, each condition, the rewards."""
    lines: list[str] = []
    for o in evaluation.outcomes:
        state = "matched" if o.matched else "not matched"
        extra = ", REVERSE IF holds" if o.reverse else ""
        lines.append(f"rule {o.rule_id}: {state}{extra}")
        for step in o.trace or []:
            lines.append("  " * (step.get("depth", 0) + 1) + _step_text(step))
        for r in o.rewards:
            capped = " (capped)" if r.capped else ""
            lines.append(f"  -> ISSUE {r.amount} TO {r.role}{capped}")
        for r in o.suppressed:
            lines.append(f"  -> suppressed by {o.suppressed_by}: ISSUE {r.amount} TO {r.role}")
    lines.append("rewards:" if evaluation.rewards else "rewards: none")
    for r in evaluation.rewards:
        lines.append(f"  {r.rule_id}: ISSUE {r.amount} TO {r.role}")
    return "\n".join(lines)


def _step_text(step: dict[str, Any]) -> str:
    result = {True: "true", False: "false", None: "skipped"}[step.get("result")]
    kind = step["kind"]
    if kind in {"compare", "within"}:
        expected = step["expected"]
        if kind == "within":
            shown = expected
        elif isinstance(expected, dict) and "field" in expected:
            shown = expected["field"]
        else:
            shown = json.dumps(expected, ensure_ascii=False)
        text = f"{step['path']} {step['op']} {shown}"
        if "actual" in step and not step.get("missing"):
            text += f" (actual: {json.dumps(step['actual'], ensure_ascii=False)}"
            if "other_actual" in step:
                text += f" vs {json.dumps(step['other_actual'], ensure_ascii=False)}"
            text += ")"
    elif kind == "action":
        text = "action"
    else:
        text = kind.upper().replace("_", " ")
    reason = f" ({step['reason']})" if step.get("reason") else ""
    return f"{text} -> {result}{reason}"


@rules.command("eval")
@paths_argument
@click.option("--context", "context_file", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A JSON file with the referral context.")
@click.option("--currency", default=None,
              help="Currency of bare integer amounts (default: the program's only currency).")
@click.option("--json", "as_json", is_flag=True, help="Print the evaluation as JSON.")
@handle_errors
def eval_context(
    paths: tuple[Path, ...], context_file: Path, currency: str | None, as_json: bool
) -> None:
    """Evaluate one context and print the trace of every condition."""
    loaded = load_rules(paths)
    context = _read_context(context_file)
    if not isinstance(context, dict):
        raise CliError(f"{context_file}: the context must be a JSON object")
    compiled = compile_program(
        loaded.program,
        default_currency=(currency or "").upper() or loaded.program.default_currency(),
    )
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
@handle_errors
def diff(
    old_path: Path, new_path: Path, records_path: str, as_of: date, as_json: bool, show: int
) -> None:
    """What NEW_PATH's rules would pay differently from OLD_PATH's on the same records.

    Both versions are settled into private throwaway databases (never --db);
    exit 0 whatever changed, 1 when the rules or the records file are invalid.
    """
    try:
        with open(records_path, encoding="utf-8"):
            pass
    except OSError as e:
        raise CliError(f"{records_path}: cannot read records: {e.strerror or e}") from e
    loaded = []
    for path in (old_path, new_path):  # report the errors of both versions, not the first only
        try:
            loaded.append(load_rules((path,)))
        except SystemExit:
            loaded.append(None)
    if loaded[0] is None or loaded[1] is None:
        raise SystemExit(EXIT_INVALID)
    try:
        report = diff_programs(loaded[0].program, loaded[1].program, records_path, as_of)
    except OSError as e:
        raise CliError(f"{records_path}: cannot read records: {e}") from e
    if as_json:
        click.echo(json.dumps(report.as_json(), indent=2, ensure_ascii=False))
    else:
        click.echo(f"rules diff {old_path} -> {new_path}")
        click.echo(format_report(report, shown=show))


@rules.command("precommit")
@click.argument("files", nargs=-1, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--program", "programs", multiple=True,
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A program directory (repeatable); default: each file's own directory.")
@handle_errors
def precommit(files: tuple[Path, ...], programs: tuple[Path, ...]) -> None:
    """Check, fmt --check and test the programs of FILES (the pre-commit hook); exit 1 on any."""
    result = precommit_files(files, programs)
    for line, diagnostic in result.lines:
        click.echo(line, err=diagnostic)
    if not result.ok:
        raise SystemExit(EXIT_INVALID)
