"""LIMIT accounting: what each beneficiary already holds from a rule in a period.

A LIMIT is consumed in the order rewards are granted (first come, first
served): a grant takes what room is left and is never cut later; a reversal
frees its room for later grants.  ``PER referrer`` / ``PER referee`` count what
the person earned *in that role* from the rule; ``PER person`` everything the
person earned from the rule.  Only rewards in the LIMIT's currency count and
are capped (settlement refuses a reward in another currency before it gets here).

Totals come from the ledger (unreversed credits of the rule to the user, by
event date) and are kept in a bounded LRU cache that the run updates as it
grants and reverses, so a prolific referrer is not summed anew for every chunk.
Earlier chunks of the run are already in the ledger (same transaction), so an
evicted total is simply asked again: memory stays flat however long the input.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from datetime import date, timedelta

from sqlalchemy.engine import Connection

from dsl.model import Limit, Rule
from settlement import ledger

# (current rule id, user id, role counted (None: every role), period start)
LimitKey = tuple[str, str, str | None, date | None]
CACHE_KEYS = 20_000


def period_window(period: str, day: date) -> tuple[date | None, date | None]:
    """The LIMIT period holding ``day``, as a half-open [start, end) range."""
    if period == "day":
        return day, day + timedelta(days=1)
    if period == "month":
        start = day.replace(day=1)
        end = date(start.year + (start.month == 12), start.month % 12 + 1, 1)
        return start, end
    if period == "year":
        return date(day.year, 1, 1), date(day.year + 1, 1, 1)
    return None, None


def counted_role(limit: Limit) -> str | None:
    """The role whose credits a LIMIT counts (None: every role, ``PER person``)."""
    return None if limit.per == "person" else limit.per


def applies(limit: Limit, role: str) -> bool:
    """Whether a LIMIT caps a reward to ``role``."""
    return limit.per in ("person", role)


class LimitBook:
    """The run's LIMIT totals; ``stored_ids`` maps a rule's current id to every id its
    credits were posted under (a renamed rule counts what it earned before)."""

    def __init__(self, conn: Connection, stored_ids: Mapping[str, tuple[str, ...]]) -> None:
        self.conn = conn
        self.stored_ids = stored_ids
        self.cache: OrderedDict[LimitKey, dict[str, int]] = OrderedDict()
        self.pinned: set[LimitKey] = set()

    def key(self, rule: Rule, user: str, day: date) -> LimitKey:
        assert rule.limit is not None
        start, _ = period_window(rule.limit.period, day)
        return (rule.id, user, counted_role(rule.limit), start)

    def prefetch(self, wanted: Iterable[tuple[Rule, str, date]]) -> None:
        """Load the totals a chunk may need, in one query; they stay until ``release``."""
        missing: dict[LimitKey, list[ledger.TotalsKey]] = {}
        for rule, user, day in wanted:
            key = self.key(rule, user, day)
            self.pinned.add(key)
            if key in self.cache:
                self.cache.move_to_end(key)
                continue
            assert rule.limit is not None
            start, end = period_window(rule.limit.period, day)
            missing[key] = [(stored, user, key[2], start, end)
                            for stored in self.stored_ids.get(rule.id, (rule.id,))]
        if not missing:
            return
        found = ledger.credited_totals_many(
            self.conn, [k for keys in missing.values() for k in keys]
        )
        for key, keys in missing.items():
            total: dict[str, int] = {}
            for k in keys:
                for currency, amount in found[k].items():
                    total[currency] = total.get(currency, 0) + amount
            self.cache[key] = total

    def release(self) -> None:
        """End of a chunk: its writes are in the ledger, so totals may be evicted."""
        self.pinned.clear()
        while len(self.cache) > CACHE_KEYS:
            self.cache.popitem(last=False)

    def room(self, rule: Rule, user: str, day: date) -> int:
        """What the rule's LIMIT still lets ``user`` earn in the period of ``day``."""
        assert rule.limit is not None
        held = self.cache[self.key(rule, user, day)].get(rule.limit.amount.currency, 0)
        return max(rule.limit.amount.amount - held, 0)

    def add(self, rule: Rule | None, user: str, role: str, day: date | None, currency: str,
            amount: int) -> None:
        """Count a grant (positive) or a reversal (negative) of this run, where cached."""
        if rule is None or rule.limit is None or day is None:
            return
        if not applies(rule.limit, role) or currency != rule.limit.amount.currency:
            return
        total = self.cache.get(self.key(rule, user, day))
        if total is not None:
            total[currency] = total.get(currency, 0) + amount
