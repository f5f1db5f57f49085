"""`referral rules compile|fmt|render`: the rule program as JSON, canonical text, diagrams.

Each loads the program (printing every diagnostic on failure) and calls one
``compiler`` function; ``referral.cli`` adds them to the ``rules`` group.
"""

from __future__ import annotations

from pathlib import Path

import click

from compiler.dot import FORMATS, render_program
from compiler.text import reformat_files
from dsl.codec import dumps
from referral.cli.common import EXIT_INVALID, handle_errors, load_rules, paths_argument

strict_option = click.option("--strict", is_flag=True, help="Treat warnings as errors.")


@click.command("compile")
@paths_argument
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the JSON model to FILE instead of standard output.")
@strict_option
@handle_errors
def compile_cmd(paths: tuple[Path, ...], output: Path | None, strict: bool) -> None:
    """Print the JSON rule model (schema_version 1) of a program."""
    loaded = load_rules(paths, strict=strict)
    text = dumps(loaded.program)
    if output is None:
        click.echo(text, nl=False)
        return
    output.write_text(text, encoding="utf-8")
    click.echo(f"wrote {output} ({len(loaded.program.rules)} rules)")


@click.command("fmt")
@paths_argument
@click.option("--check", is_flag=True,
              help="Write nothing; list the files that would change and exit 1 if any.")
@handle_errors
def fmt(paths: tuple[Path, ...], check: bool) -> None:
    """Rewrite .rule files in the canonical layout."""
    changed = reformat_files(load_rules(paths).files)
    for path, text in changed.items():
        if check:
            click.echo(f"would reformat {path}")
        else:
            path.write_text(text, encoding="utf-8")
            click.echo(f"reformatted {path}")
    if check and changed:
        raise SystemExit(EXIT_INVALID)


@click.command("render")
@paths_argument
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="dot", show_default=True,
              help="dot needs nothing; svg and png need Graphviz's dot program.")
@click.option("-o", "--output", "outdir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("diagrams"), show_default=True, help="Directory for the diagrams.")
@handle_errors
def render(paths: tuple[Path, ...], fmt: str, outdir: Path) -> None:
    """Write one diagram per rule (<rule id>.<format>)."""
    for path in render_program(load_rules(paths).program, fmt, outdir):  # type: ignore[arg-type]
        click.echo(str(path))
