"""`referral rules ...`: check, compile, fmt, render, test, eval."""

from __future__ import annotations

import click


@click.group()
def rules() -> None:
    """Check, compile, format, render and test rule programs."""
