"""`referral rules catalog`: the rule program as a static HTML site (``compiler.catalog``)."""

from __future__ import annotations

from pathlib import Path

import click

from referral.cli.common import handle_errors, load_rules, paths_argument


@click.command("catalog")
@paths_argument
@click.option("-o", "--output", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("site"), show_default=True, help="Directory for the site.")
@click.option("--strict", is_flag=True, help="Treat warnings as errors.")
@handle_errors
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
