"""What makes a settlement run fail as a whole, though every record was handled.

A run in which every record was quarantined, or that read nothing, is almost
always an upstream fault (a truncated feed, a changed format), not a quiet
night: it fails with ``InputRejected`` (exit 4) and writes nothing, unless the
operator said how much quarantine is acceptable (``--max-quarantine``) or that
an empty input is expected (``--allow-empty``).  Runs also go forward in time:
an ``--as-of`` before the newest committed run's is refused unless
``--backfill`` says it is meant.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from settlement.errors import InputRejected, SettlementError
from settlement.tables import settlement_runs

SHOWN_REASONS = 3
_LIMIT = re.compile(r"(?P<n>[0-9]+(?:\.[0-9]+)?)(?P<pct>%?)")


@dataclass(frozen=True)
class QuarantineLimit:
    """``--max-quarantine``: at most ``count`` records, or at most ``percent`` % of them."""

    count: int | None = None
    percent: Decimal | None = None

    @classmethod
    def parse(cls, text: str) -> QuarantineLimit:
        """``10`` (records) or ``2.5%`` (of the records read); ValueError otherwise."""
        m = _LIMIT.fullmatch(text.strip())
        if m is None:
            raise ValueError(f"{text!r} is not a count (10) or a percentage (2.5%)")
        if m["pct"]:
            percent = Decimal(m["n"])
            if percent > 100:
                raise ValueError(f"{text!r}: a percentage is at most 100%")
            return cls(percent=percent)
        if "." in m["n"]:
            raise ValueError(f"{text!r}: a count of records is a whole number")
        return cls(count=int(m["n"]))

    def allows(self, quarantined: int, records: int) -> bool:
        if self.count is not None:
            return quarantined <= self.count
        assert self.percent is not None
        return quarantined * 100 <= self.percent * records

    def __str__(self) -> str:
        return f"{self.percent}%" if self.percent is not None else str(self.count)


@dataclass(frozen=True)
class InputGuards:
    """When a run fails as a whole: ``max_quarantine`` (None: only when every record was
    quarantined) and whether an empty input is allowed."""

    max_quarantine: QuarantineLimit | None = None
    allow_empty: bool = False


def check_input(records: int, quarantined: int, reasons: list[str], *, input_name: str,
                guards: InputGuards) -> None:
    """Refuse (InputRejected) an empty input, or more quarantine than allowed; without
    a limit, a run in which every record was quarantined."""
    max_quarantine = guards.max_quarantine
    if records == 0:
        if not guards.allow_empty:
            raise InputRejected(
                f"{input_name}: no records; nothing was written (--allow-empty settles an"
                " empty input, which only confirms the holds that ended)")
        return
    if max_quarantine is None:
        if quarantined < records:
            return
        what = f"all {records} records of {input_name} were quarantined"
        hint = "--max-quarantine accepts a count or a percentage"
    elif max_quarantine.allows(quarantined, records):
        return
    else:
        what = (f"{quarantined} of {records} records of {input_name} were quarantined, more"
                f" than --max-quarantine {max_quarantine} allows")
        hint = "see `settle --strict` for the first one in full"
    first = "; ".join(reasons[:SHOWN_REASONS])
    raise InputRejected(f"{what}; nothing was written; first: {first} ({hint})")


def check_as_of(conn: Connection, as_of: date, *, backfill: bool) -> None:
    """Refuse an as-of before the newest committed run's unless ``backfill``."""
    if backfill:
        return
    newest = conn.execute(
        sa.select(settlement_runs.c.as_of, settlement_runs.c.run_id)
        .order_by(settlement_runs.c.as_of.desc(), settlement_runs.c.finished_at.desc()).limit(1)
    ).first()
    if newest is not None and as_of < newest.as_of:
        raise SettlementError(
            f"--as-of {as_of} is before the newest run's as-of {newest.as_of} (run"
            f" {newest.run_id}): runs go forward in time; pass --backfill to settle an earlier"
            " date on purpose")
