"""`referral`: the command group and the console script's entry point.

Each command group lives in its own module; ``referral.cli.common`` holds what
they share, including the one map from errors to exit codes.
"""

from __future__ import annotations

import gc

import click

from referral.cli.common import DEBUG_KEY, EXIT_CODES_HELP, LazyGroup

# Each command's module is imported when a command line names it (LazyGroup).
COMMANDS = {
    "rules": "referral.cli.rules:rules",
    "db": "referral.cli.db:db",
    "ledger": "referral.cli.ledger:ledger",
    "settle": "referral.cli.settle:settle",
    "runs": "referral.cli.runs:runs",
    "quarantine": "referral.cli.runs:quarantine",
    "payees": "referral.cli.payees:payees",
    "payout": "referral.cli.payout:payout",
    "report": "referral.cli.report:report",
    "demo": "referral.cli.demo:demo",
    "lsp": "referral.cli.lsp:lsp",
    "config": "referral.cli.config:config",
}


@click.group(cls=LazyGroup, lazy=COMMANDS,
             context_settings={"help_option_names": ["-h", "--help"]},
             epilog=EXIT_CODES_HELP)
@click.version_option(package_name="referral-rewards")
@click.option("--debug", is_flag=True, envvar="REFERRAL_DEBUG",
              help="Show the traceback of an error instead of its one line.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Referral rewards: rules that decide, a ledger that records."""
    ctx.meta[DEBUG_KEY] = debug


# The cyclic collector's default (a young collection every 700 allocations) cost a payout
# of 240,000 people a tenth of its run (bench/RESULTS.md): bulk commands allocate millions
# of rows that live to the end of the command and form no cycles.  What was imported is
# frozen out of every collection; collections come a hundred times less often.
COLLECTOR_THRESHOLDS = (100_000, 50, 100)


def tune_collector() -> None:
    gc.freeze()
    gc.set_threshold(*COLLECTOR_THRESHOLDS)


def run() -> None:
    """The console script: the collector tuned for a process that runs one command (not
    done in ``main``, which tests invoke many times in one process)."""
    tune_collector()
    main()
