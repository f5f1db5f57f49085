"""`referral lsp`: the rule language server over stdio (for editors; see editors/)."""

from __future__ import annotations

from pathlib import Path

import click

from referral.cli.common import Command


@click.command("lsp", cls=Command)
@click.option("--records", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A JSONL or CSV sample of referral records: completion and hover learn "
                   "field paths and types from it.")
@click.option("--program", "programs", multiple=True,
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A program directory (repeatable); default: a file's directory and the "
                   "ancestors that hold .rule files too.")
def lsp(records: Path | None, programs: tuple[Path, ...]) -> None:
    """Serve the Language Server Protocol on stdin/stdout (diagnostics, completion,
    hover, definitions, references, formatting, EXAMPLE code lenses)."""
    from referral.lsp import serve  # pygls loads only when the server runs

    serve(programs, records)
