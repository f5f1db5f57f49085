"""`referral ledger ...`: post, move, approve, reverse, show, balance, pending, export, verify.

Each command opens the database, checks the schema, calls one function of
``settlement.ledger`` inside one transaction and prints its result.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import date
from pathlib import Path

import click

from dsl.money import Money, format_money, parse_money
from referral.cli.common import (
    ChecksFailed,
    CommandInputError,
    Group,
    actor_name,
    business_date_option,
    db_option,
    db_transaction,
    lock_timeout_option,
    optional_date,
)
from settlement import anchors, audit
from settlement import ledger as ledger_api
from settlement.csvcells import SafeDictWriter
from settlement.ledger import (
    EXPORT_FIELDS,
    Entry,
    ExportFilter,
    PostResult,
    TransitionResult,
    format_timestamp,
)
from settlement.records import canonical_id
from settlement.tables import STATUSES


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


def _canonical_id(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Ids as settlement reads them: NFC, no invisible, bidi or line-breaking characters
    (which could forge lines in ``ledger show`` or pass for another person)."""
    try:
        return None if value is None else canonical_id(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


@ledger.command()
@click.argument("user", callback=_canonical_id)
@click.argument("amount")
@click.option("--reference", "reference", required=True, callback=_canonical_id,
              help="Idempotency key of the credit.")
@click.option("--confirmed", is_flag=True, help="Post as confirmed instead of pending.")
@business_date_option
@lock_timeout_option
@db_option
def credit(user: str, amount: str, reference: str, confirmed: bool, business_date: date,
           db_url: str) -> None:
    """Credit USER with AMOUNT (₹500, INR 500); reposting the same reference is a no-op."""
    money = parse_money(amount)
    status = "confirmed" if confirmed else "pending"
    with db_transaction(db_url) as conn:
        result = ledger_api.post_credit(
            conn, user, money.amount, money.currency, reference, status=status,
            business_date=business_date,
        )
    click.echo(_posted(result))


def _move(move: Callable[..., TransitionResult], ref: str, business_date: date,
          db_url: str) -> None:
    with db_transaction(db_url) as conn:
        result = move(conn, ref, business_date=business_date)
    click.echo(f"{ref}: {result.message}")


@ledger.command()
@click.argument("ref")
@business_date_option
@lock_timeout_option
@db_option
def confirm(ref: str, business_date: date, db_url: str) -> None:
    """Move a pending credit to confirmed."""
    _move(ledger_api.confirm, ref, business_date, db_url)


@ledger.command()
@click.argument("ref")
@business_date_option
@lock_timeout_option
@db_option
def pay(ref: str, business_date: date, db_url: str) -> None:
    """Mark one confirmed credit paid by hand (a single correction; `payout` pays people)."""
    _move(ledger_api.pay, ref, business_date, db_url)


@ledger.command()
@click.option("--rule", "rule_id", required=True, help="The rule whose pending rewards to confirm.")
@click.option("--until", callback=optional_date, metavar="YYYY-MM-DD",
              help="Only rewards whose event date is on or before this date.")
@click.option("--user", "user_id", help="Only this person's rewards.")
@click.option("--reason", required=True, help="Why they are approved (kept on every move).")
@click.option("--by", "by", help="Who approves (default: the OS user).")
@business_date_option
@lock_timeout_option
@db_option
def approve(rule_id: str, until: date | None, user_id: str | None, reason: str, by: str | None,
            business_date: date, db_url: str) -> None:
    """Confirm a rule's pending rewards in bulk, in one transaction."""
    with db_transaction(db_url) as conn:
        results = ledger_api.approve(
            conn, rule_id=rule_id, until=until, user_id=user_id, reason=reason,
            approver=actor_name(by), business_date=business_date,
        )
    totals: dict[str, int] = {}
    for r in results:
        totals[r.entry.currency] = totals.get(r.entry.currency, 0) + r.entry.amount
    amounts = ", ".join(format_money(Money(a, c)) for c, a in sorted(totals.items()))
    click.echo(f"approved {len(results)} pending reward{'s' if len(results) != 1 else ''} of "
               f"rule {rule_id}" + (f": {amounts}" if amounts else ""))


@ledger.command()
@click.option("--rule", "rule_id", help="Only this rule's rewards.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
@db_option
def pending(rule_id: str | None, as_json: bool, db_url: str) -> None:
    """Rewards awaiting confirmation (a hold or an approval)."""
    with db_transaction(db_url, read_only=True) as conn:
        entries = ledger_api.pending_credits(conn, rule_id=rule_id)
    totals: dict[str, int] = {}
    for e in entries:
        totals[e.currency] = totals.get(e.currency, 0) + e.amount
    if as_json:
        click.echo(json.dumps({
            "pending": [{"reference_id": e.reference_id, "user_id": e.user_id,
                         "rule_id": e.rule_id, "amount": e.amount, "currency": e.currency,
                         "event_date": _iso(e.event_date), "hold_until": _iso(e.hold_until),
                         "business_date": e.day.isoformat()} for e in entries],
            "totals": dict(sorted(totals.items())),
        }))
        return
    for e in entries:
        hold = f" held until {e.hold_until}" if e.hold_until else ""
        click.echo(f"{e.reference_id}  {e.user_id}  {format_money(e.money)}  "
                   f"rule {e.rule_id or '-'}{hold}")
    summary = ", ".join(format_money(Money(a, c)) for c, a in sorted(totals.items()))
    click.echo(f"{len(entries)} pending" + (f": {summary}" if summary else ""))


def _iso(day: date | None) -> str | None:
    return day.isoformat() if day is not None else None


@ledger.command()
@click.argument("ref")
@click.option("--reason", required=True, help="Why the entry is reversed (kept in history).")
@business_date_option
@lock_timeout_option
@db_option
def reverse(ref: str, reason: str, business_date: date, db_url: str) -> None:
    """Reverse an entry with a debit reversal:REF (a paid entry becomes a clawback)."""
    with db_transaction(db_url) as conn:
        result = ledger_api.reverse(conn, ref, reason, business_date=business_date)
    click.echo(_posted(result))


@ledger.command()
@click.argument("ref")
@db_option
def show(ref: str, db_url: str) -> None:
    """An entry, its transition history, and the whole history of its reward."""
    with db_transaction(db_url, read_only=True) as conn:
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
        ("dated", entry.day.isoformat()),
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
        if t.business_date is not None and t.business_date != t.at.date():
            by += f" dated {t.business_date}"
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
        with db_transaction(db_url, read_only=True) as conn:
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
    with db_transaction(db_url, read_only=True) as conn:
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
@click.option("--status", type=click.Choice(STATUSES), help="Only entries in this status.")
@click.option("--rule", "rule_id", help="Only this rule's entries.")
@click.option("--user", "user_id", help="Only this person's entries.")
@click.option("--from", "start", callback=optional_date, metavar="YYYY-MM-DD",
              help="Only entries with a business date on or after this one.")
@click.option("--to", "end", callback=optional_date, metavar="YYYY-MM-DD",
              help="Only entries with a business date on or before this one.")
@db_option
def export(fmt: str, status: str | None, rule_id: str | None, user_id: str | None,
           start: date | None, end: date | None, db_url: str) -> None:
    """Every entry in ledger order (streamed): user_id, amount, currency, entry_type, status,
    reference_id, reversal_id, timestamp, business_date, rule_id, referral_id, role,
    event_date, hold_until, run_id, paid_date, payout_batch."""
    out = _Echo()
    writer = SafeDictWriter(out, fieldnames=EXPORT_FIELDS)
    if fmt == "csv":
        writer.writeheader()
    where = ExportFilter(status=status, rule_id=rule_id, user_id=user_id, start=start, end=end)
    with db_transaction(db_url, read_only=True) as conn:
        for record in ledger_api.iter_export(conn, where):
            if fmt == "csv":
                writer.writerow({k: "" if v is None else v for k, v in record.items()})
            else:
                out.write(json.dumps(record, ensure_ascii=False) + "\n")


ANCHOR_KEY_ENV = "REFERRAL_ANCHOR_KEY"


def _anchor_key() -> bytes | None:
    key = os.environ.get(ANCHOR_KEY_ENV)
    return key.encode("utf-8") if key else None


@ledger.command()
@click.option("-o", "--output", "output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the anchor to this file (default: standard output).")
@db_option
def anchor(output: Path | None, db_url: str) -> None:
    """Write the chains' heads and every table's row count as JSON, to keep outside the
    database; signed (HMAC-SHA256) with REFERRAL_ANCHOR_KEY when it is set.  `ledger verify
    --anchor FILE` then proves nothing before it was changed, deleted or emptied."""
    with db_transaction(db_url, read_only=True) as conn:
        payload = anchors.take(conn)
    text = anchors.dumps(payload, _anchor_key())
    if output is None:
        click.echo(text, nl=False)
        return
    tmp = output.with_name(output.name + ".tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, output)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise CommandInputError(f"{output}: cannot write the anchor: {e.strerror}") from None
    entries = payload["entries"]
    signed = "signed" if _anchor_key() else "unsigned"
    click.echo(f"anchor written to {output} ({signed}): entry head "
               f"{entries['head_id'] if entries else 'none'}, "
               f"{payload['counts']['ledger_operations']} operations", err=True)


@ledger.command()
@click.option("--anchor", "anchor_file", type=click.Path(dir_okay=False, path_type=Path),
              help="An anchor written by `ledger anchor`: also prove nothing before it changed.")
@db_option
def verify(anchor_file: Path | None, db_url: str) -> None:
    """Re-check the whole ledger: hash chain, transitions, reversals, zero-sum postings, the
    sealed operations; with --anchor, against heads and counts kept outside the database."""
    anchored = None
    if anchor_file is not None:
        try:
            text = anchor_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise CommandInputError(f"{anchor_file}: cannot read the anchor: {e}") from None
        anchored = anchors.loads(text, _anchor_key(), str(anchor_file))
    with db_transaction(db_url, read_only=True) as conn:
        report = audit.verify(conn, anchored, str(anchor_file))
    if not report.ok:
        more = len(report.problems) - 1
        extra = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
        raise ChecksFailed(f"ledger verification failed: {report.problems[0]}{extra}")
    since = (f"; nothing before anchor {anchor_file} ({anchored.taken_at}) changed"
             if anchored is not None else "")
    click.echo(
        f"ok: {report.checked} entries checked, hash chain intact, every currency sums to zero"
        + since
    )
