"""`referral rules draft`: a product manager's sentence -> a checked rule text.

Exit 0 with a draft that parses and validates with the program; 1 (a
``DraftError``) with every unmapped word named and its closest candidates, or
the checker's diagnostics.  Nothing is posted: the draft is for review.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import click

from compiler.draft import DraftResult, draft, load_context
from compiler.draft_model import ENV_URL, ChatModel
from dsl.draft import DraftError
from dsl.errors import ReferralError
from referral.cli.common import Command

_RULE_ID = re.compile(r"[^\W\d]\w*")


def _rule_id(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not _RULE_ID.fullmatch(value):
        raise click.BadParameter(f"{value!r} is not a rule id (letters, digits, _)")
    return value


@click.command("draft", cls=Command)
@click.argument("text", nargs=-1, required=True)
@click.option("--program", "program", multiple=True,
              type=click.Path(exists=True, path_type=Path),
              help="The rule program (directory or files) whose phrases the draft may use "
                   "and that it is checked with.")
@click.option("--records", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A sample of the records feed: field paths and types are learnt from it.")
@click.option("--id", "rule_id", callback=_rule_id,
              help="The rule's id (default: made from the sentence).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the rule text to FILE (only when it checks).")
@click.option("--model", "model_url", envvar=ENV_URL, metavar="URL",
              help=f"An OpenAI-compatible endpoint to draft with (also {ENV_URL}); "
                   "its answer is checked like any rule.")
def draft_cmd(
    text: tuple[str, ...], program: tuple[Path, ...], records: Path | None,
    rule_id: str | None, as_json: bool, output: Path | None, model_url: str | None,
) -> None:
    """Draft a rule from English TEXT; show how each part was understood."""
    try:
        context = load_context(program, records)
    except OSError as e:
        raise ReferralError(f"{records}: cannot read records: {e}") from e
    result = draft(text, context, rule_id=rule_id, model=ChatModel.from_env(model_url))
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2, ensure_ascii=False))
    if not result.ok:
        if not as_json:
            _report_refusal(result)
        raise DraftError(_refusal(result))
    assert result.rule_text is not None
    if output is not None:
        output.write_text(result.rule_text, encoding="utf-8")
    if as_json:
        return
    for d in result.diagnostics:
        click.echo(str(d), err=True)
    if output is None:
        click.echo(result.rule_text, nl=False)
    click.echo(understood(result))
    if output is not None:
        click.echo(f"wrote {output}")


def understood(result: DraftResult) -> str:
    """How each part of the sentence was read, as rule comments (the output stays rule text)."""
    lines = [f"\n# understood ({result.model}):"]
    width = max((len(m.words) for m in result.mapping), default=0) + 2
    for m in result.mapping:
        lines.append(f'#   {json.dumps(m.words, ensure_ascii=False):<{width}} -> '
                     f"{m.became}  [{m.source}]")
    return "\n".join(lines)


def _report_refusal(result: DraftResult) -> None:
    for u in result.unmapped:
        why = f" ({u.reason})" if u.reason else ""
        closest = f"; closest: {', '.join(u.candidates)}" if u.candidates else ""
        click.echo(f"unmapped: {json.dumps(u.words, ensure_ascii=False)}{why}{closest}",
                   err=True)
    for d in result.diagnostics:
        click.echo(str(d), err=True)
    if result.mapping:
        click.echo(understood(result).lstrip("\n"), err=True)


def _refusal(result: DraftResult) -> str:
    if result.unmapped:
        words = ", ".join(json.dumps(u.words, ensure_ascii=False) for u in result.unmapped)
        return f"no rule drafted: could not map {words}"
    first = next((d for d in result.diagnostics if d.severity == "error"), None)
    return f"no rule drafted: {first.message if first else 'the draft does not check'}"


__all__ = ["draft_cmd", "understood"]
