"""`referral`: the command group and the console script's entry point.

Each command group lives in its own module; ``referral.cli.common`` holds what
they share, including the one map from errors to exit codes.
"""

from __future__ import annotations

import click

from referral.cli.common import DEBUG_KEY, EXIT_CODES_HELP, Group
from referral.cli.config import config
from referral.cli.db import db
from referral.cli.demo import demo
from referral.cli.draft import draft_cmd
from referral.cli.ledger import ledger
from referral.cli.lsp import lsp
from referral.cli.payees import payees
from referral.cli.payout import payout
from referral.cli.report import report
from referral.cli.rules import rules
from referral.cli.runs import quarantine, runs
from referral.cli.settle import settle


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]},
             epilog=EXIT_CODES_HELP)
@click.version_option(package_name="referral-rewards")
@click.option("--debug", is_flag=True, envvar="REFERRAL_DEBUG",
              help="Show the traceback of an error instead of its one line.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Referral rewards: rules that decide, a ledger that records."""
    ctx.meta[DEBUG_KEY] = debug


rules.add_command(draft_cmd)
for command in (rules, db, ledger, settle, runs, quarantine, payees, payout, report, demo, lsp,
                config):
    main.add_command(command)
