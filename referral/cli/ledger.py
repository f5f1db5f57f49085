"""`referral ledger ...`: post, move, reverse, show, balance, export, verify.

Each command opens the database, checks the schema, calls one function of
``settlement.ledger`` inside one transaction and prints its result.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import click
from sqlalchemy.engine import Connection

from dsl.money import Money, format_money, parse_money
from referral.cli.common import ChecksFailed, Group, db_option
from settlement import audit
from settlement import ledger as ledger_api
from settlement.db import READ_ONLY, open_engine, require_schema
from settlement.ledger import (
    EXPORT_FIELDS,
    Entry,
    PostResult,
    TransitionResult,
    format_timestamp,
)


@contextmanager
def _transaction(db_url: str, *, read_only: bool = False) -> Iterator[Connection]:
    """One transaction; a read-only one does not queue behind a running settlement."""
    engine = open_engine(db_url)
    try:
        with engine.connect() as conn:
            if read_only:
                conn.execution_options(**READ_ONLY)
            with conn.begin():
                require_schema(conn)
                yield conn
    finally:
        engine.dispose()


def _summary(entry: Entry) -> str:
    money = format_money(Money(entry.amount, entry.currency))
    what = f"user {entry.user_id}, {money} {entry.entry_type}, {entry.status}"
    text = f"{entry.reference_id} ({what})"
    return text + (f" reverses {entry.reversal_id}" if entry.reversal_id else "")


def _posted(result: PostResult) -> str:
    return f"{'created' if result.created else 'already existed'}: {_summary(result.entry)}"


@click.group(cls=Group)
def ledger() -> None:
    """Post, move, reverse, inspect and verify ledger entries."""


@ledger.command()
@click.argument("user")
@click.argument("amount")
@click.option("--reference", "reference", required=True, help="Idempotency key of the credit.")
@click.option("--confirmed", is_flag=True, help="Post as confirmed instead of pending.")
@db_option
def credit(user: str, amount: str, reference: str, confirmed: bool, db_url: str) -> None:
    """Credit USER with AMOUNT (₹500, INR 500); reposting the same reference is a no-op."""
    money = parse_money(amount)
    status = "confirmed" if confirmed else "pending"
    with _transaction(db_url) as conn:
        result = ledger_api.post_credit(
            conn, user, money.amount, money.currency, reference, status=status
        )
    click.echo(_posted(result))


def _move(move: Callable[[Connection, str], TransitionResult], ref: str, db_url: str) -> None:
    with _transaction(db_url) as conn:
        result = move(conn, ref)
    click.echo(f"{ref}: {result.message}")


@ledger.command()
@click.argument("ref")
@db_option
def confirm(ref: str, db_url: str) -> None:
    """Move a pending credit to confirmed."""
    _move(ledger_api.confirm, ref, db_url)


@ledger.command()
@click.argument("ref")
@db_option
def pay(ref: str, db_url: str) -> None:
    """Mark a confirmed credit paid (money left the program)."""
    _move(ledger_api.pay, ref, db_url)


@ledger.command()
@click.argument("ref")
@click.option("--reason", required=True, help="Why the entry is reversed (kept in history).")
@db_option
def reverse(ref: str, reason: str, db_url: str) -> None:
    """Reverse an entry with a debit reversal:REF (a paid entry becomes a clawback)."""
    with _transaction(db_url) as conn:
        result = ledger_api.reverse(conn, ref, reason)
    click.echo(_posted(result))


@ledger.command()
@click.argument("ref")
@db_option
def show(ref: str, db_url: str) -> None:
    """An entry, its transition history, and the whole history of its reward."""
    with _transaction(db_url, read_only=True) as conn:
        found = audit.reward_history(conn, ref)
    entry, transitions = found.entry, found.transitions
    money = format_money(Money(entry.amount, entry.currency))
    lines = [
        ("reference_id", entry.reference_id),
        ("user_id", entry.user_id),
        ("amount", f"{money} ({entry.amount} {entry.currency} minor units)"),
        ("entry_type", entry.entry_type),
        ("status", entry.status),
        ("reversal_id", entry.reversal_id or "-"),
        ("timestamp", format_timestamp(entry.timestamp)),
    ]
    for name in ("rule_id", "rule_hash", "run_id", "referral_id", "role", "event_date",
                 "hold_until", "adjusts"):
        value = getattr(entry, name)
        if value is not None:
            lines.append((name, str(value)))
    lines += [("actor", entry.actor), ("hash", entry.hash)]
    for name, value in lines:
        click.echo(f"{name + ':':<14}{value}")
    click.echo("history:")
    for t in transitions:
        move = f"{t.from_status or '-'} -> {t.to_status}"
        by = t.actor + (f" run {t.run_id}" if t.run_id else "")
        why = f": {t.reason}" if t.reason else ""
        click.echo(f"  {format_timestamp(t.at)}  {move}  by {by}{why}")
    if found.key is not None and len(found.entries) > 1:
        rule_id, referral_id, role = found.key
        standing = sum(e.amount for e in found.entries)
        click.echo(f"reward {rule_id}:{referral_id}:{role} (stands at "
                   f"{format_money(Money(standing, entry.currency))}):")
        for e in found.entries:
            link = (f" reverses {e.reversal_id}" if e.reversal_id
                    else f" adjusts {e.adjusts}" if e.adjusts else "")
            mark = "*" if e.reference_id == entry.reference_id else " "
            click.echo(f" {mark} {e.reference_id}  {e.user_id}  "
                       f"{format_money(Money(e.amount, e.currency))}  {e.status}{link}")


@ledger.command()
@click.argument("user", required=False)
@click.option("--program", is_flag=True, help="The program's funding account instead of a user.")
@click.option("--json", "as_json", is_flag=True, help="Print the documented JSON object.")
@db_option
def balance(user: str | None, program: bool, as_json: bool, db_url: str) -> None:
    """Balances of USER per currency (pending, confirmed, paid, reversed, net), or --program."""
    if (user is None) == (not program):
        raise click.UsageError("give either USER or --program")
    if program:
        with _transaction(db_url, read_only=True) as conn:
            funding = ledger_api.program_balance(conn)
        if as_json:
            click.echo(json.dumps(funding))
            return
        if not funding:
            click.echo("no entries")
        for currency, amount in funding.items():
            click.echo(f"program:funding {currency} {format_money(Money(amount, currency))}")
        return
    assert user is not None
    with _transaction(db_url, read_only=True) as conn:
        balances = ledger_api.balance(conn, user)
    if as_json:
        click.echo(json.dumps({cur: b.as_json() for cur, b in balances.items()}))
        return
    if not balances:
        click.echo(f"no entries for user {user}")
    for currency, b in balances.items():
        parts = [f"{k} {format_money(Money(v, currency))}" for k, v in b.as_json().items()]
        click.echo(f"{currency}  " + "  ".join(parts))


class _Echo:
    """A file-like sink for csv.writer that goes through click.echo."""

    def write(self, text: str) -> None:
        click.echo(text, nl=False)


@ledger.command()
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl",
              show_default=True)
@db_option
def export(fmt: str, db_url: str) -> None:
    """Every entry in ledger order: user_id, amount, currency, entry_type, status, ..."""
    out = _Echo()
    writer = csv.DictWriter(out, fieldnames=EXPORT_FIELDS, lineterminator="\n")
    if fmt == "csv":
        writer.writeheader()
    with _transaction(db_url, read_only=True) as conn:
        for entry in ledger_api.iter_entries(conn):
            record = entry.export_record()
            if fmt == "csv":
                writer.writerow({k: "" if v is None else v for k, v in record.items()})
            else:
                out.write(json.dumps(record, ensure_ascii=False) + "\n")


@ledger.command()
@db_option
def verify(db_url: str) -> None:
    """Re-check the whole ledger: hash chain, transitions, reversals, zero-sum postings."""
    with _transaction(db_url, read_only=True) as conn:
        report = audit.verify(conn)
    if not report.ok:
        more = len(report.problems) - 1
        extra = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
        raise ChecksFailed(f"ledger verification failed: {report.problems[0]}{extra}")
    click.echo(
        f"ok: {report.checked} entries checked, hash chain intact, every currency sums to zero"
    )
