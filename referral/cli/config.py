"""`referral config show`: every setting, its value and where it came from."""

from __future__ import annotations

import json

import click

from referral.cli.common import Group, current_config


@click.group(cls=Group)
def config() -> None:
    """The settings from referral.toml (or [tool.referral] in pyproject.toml) and REFERRAL_*."""


@config.command("show")
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
def show(as_json: bool) -> None:
    """Print each setting, its value and its source (a flag still wins over all of them)."""
    cfg = current_config()
    if as_json:
        click.echo(json.dumps({
            "file": str(cfg.file) if cfg.file else None,
            "settings": {s.key: {"value": list(s.value) if isinstance(s.value, tuple)
                                 else s.value, "source": s.source} for s in cfg},
        }))
        return
    click.echo(f"file: {cfg.file or '(none found)'}")
    for s in cfg:
        value = ", ".join(s.value) if isinstance(s.value, tuple) else s.value
        shown = "-" if value is None else value
        click.echo(f"{s.key:<15} {shown!s:<40} ({s.source})")
