"""Human text for what the library returns (the library returns data; the CLI words it)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dsl.errors import Diagnostic
from dsl.model import Program
from dsl.money import Money, format_money
from settlement.impact import Counts, ImpactReport, PayoutChange, signed


def _net_text(amounts: dict[str, int]) -> str:
    if not amounts:
        return "no change"
    return ", ".join(signed(Money(a, c)) for c, a in sorted(amounts.items()))


def _describe_counts(c: Counts) -> str:
    return (f"{c.newly_paying} newly pay, {c.stopped_paying} stop paying, "
            f"{c.amount_changed} amount changed, {c.unchanged} unchanged")


def _describe_change(c: PayoutChange) -> str:
    who = f"{c.referral_id} {c.role} {c.user_id}"
    if c.old is None:
        assert c.new is not None
        return f"  + {who}: {format_money(c.new)}"
    if c.new is None:
        return f"  - {who}: {format_money(c.old)}"
    return f"  ~ {who}: {format_money(c.old)} -> {format_money(c.new)}"


def format_report(report: ImpactReport, *, shown: int = 20) -> str:
    """``rules diff``: a line per rule, its changed referrals (``shown`` at most), totals."""
    lines = [f"{report.records} records as of {report.as_of}; quarantined: "
             f"{report.quarantined_old} (old), {report.quarantined_new} (new)"]
    for r in report.rules:
        lines.append(f"rule {r.rule_id} ({r.status}): {_describe_counts(r.counts)}; "
                     f"net {_net_text(r.counts.net_change)}")
        lines.extend(_describe_change(c) for c in r.changes[:shown])
        if len(r.changes) > shown:
            lines.append(f"  ... and {len(r.changes) - shown} more")
    t = report.totals
    lines.append(f"total: {_describe_counts(t)}")
    for currency in sorted(set(t.old_paid) | set(t.new_paid)):
        old = Money(t.old_paid.get(currency, 0), currency)
        new = Money(t.new_paid.get(currency, 0), currency)
        lines.append(f"  {currency}: {format_money(old)} -> {format_money(new)} "
                     f"({signed(new - old)})")
    if not report.has_changes:
        lines.append("no changes")
    return "\n".join(lines)


# ---------------------------------------------------------------- rules check --format

def diagnostic_json(d: Diagnostic) -> dict[str, Any]:
    pos = d.pos
    return {"file": pos.file if pos else None, "line": pos.line if pos else None,
            "column": pos.column if pos else None, "severity": d.severity, "message": d.message}


def check_json(diagnostics: Sequence[Diagnostic], program: Program | None,
               files: int) -> dict[str, Any]:
    """``rules check --format json``: every diagnostic and the counts, as one object."""
    errors = sum(1 for d in diagnostics if d.severity == "error")
    counts = {"rules": len(program.rules), "definitions": len(program.definitions),
              "examples": len(program.examples)} if program is not None else None
    return {"ok": program is not None, "errors": errors,
            "warnings": len(diagnostics) - errors, "files": files, "program": counts,
            "diagnostics": [diagnostic_json(d) for d in diagnostics]}


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def github_annotation(d: Diagnostic) -> str:
    """A GitHub Actions workflow command: ``::error file=F,line=L,col=C::message``."""
    level = "error" if d.severity == "error" else "warning"
    props = ""
    if d.pos is not None:
        props = (f" file={_escape_property(d.pos.file)},line={d.pos.line},"
                 f"col={d.pos.column}")
    return f"::{level}{props}::{_escape_data(d.message)}"
