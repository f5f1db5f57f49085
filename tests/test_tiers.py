"""Overlap and gap report: EXCLUSIVE tiers over one field (`rules check` warnings and the
data behind the catalog's overlaps page)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from dsl.program import load_program
from dsl.validate import tier_families

RULES_DIR = Path(__file__).resolve().parent.parent / "rules"

TIERS = """\
DEFINE "subscribes" AS referee.subscribed = true

RULE bronze PRIORITY 20 EXCLUSIVE IF subscribes AND referee.first_payment >= ₹1,000
  AND referee.first_payment < ₹4,000 THEN ISSUE ₹100
RULE silver PRIORITY 20 EXCLUSIVE IF subscribes AND referee.first_payment >= ₹5,000
  AND referee.first_payment <= ₹10,000 THEN ISSUE ₹300
RULE gold PRIORITY 20 EXCLUSIVE IF subscribes AND referee.first_payment >= ₹10,000
  THEN ISSUE ₹600
RULE platinum PRIORITY 30 EXCLUSIVE IF subscribes AND referee.first_payment >= ₹50,000
  THEN ISSUE ₹900
"""


def _load(tmp_path: Path, text: str):
    src = tmp_path / "t.rule"
    src.write_text(text, encoding="utf-8")
    return src, load_program([src])


def test_shipped_silver_and_gold_meet_exactly():
    loaded = load_program([RULES_DIR])
    assert loaded.warnings == []
    (family,) = tier_families(loaded.program)
    assert family.path == "referee.first_payment"
    assert [t.rule.id for t in family.tiers] == ["silver_tier", "gold_tier"]
    assert family.findings == ()
    silver, gold = family.tiers
    assert (silver.low.key, silver.low.inclusive, silver.high.key, silver.high.inclusive) == (
        500000, True, 1000000, False)
    assert (gold.low.key, gold.high) == (1000000, None)


def test_gap_and_overlap_are_warned(tmp_path):
    src, loaded = _load(tmp_path, TIERS)
    assert [w.line() for w in loaded.warnings] == [
        f"{src}:5:1: warning: EXCLUSIVE tiers bronze and silver leave a gap in "
        "referee.first_payment: [₹4,000, ₹5,000) pays neither (make bronze's range end where "
        "silver's starts: < and >= on the same value)",
        f"{src}:7:1: warning: EXCLUSIVE tiers silver and gold overlap in "
        "referee.first_payment: [₹10,000, ₹10,000] matches both, and with equal priority 20 "
        "both pay the referrer (make the ranges meet: < and >= on the same value, or give "
        "them different priorities)",
    ]
    (family,) = tier_families(loaded.program)
    assert [t.rule.id for t in family.tiers] == ["bronze", "silver", "gold", "platinum"]
    # platinum overlaps gold by design: its higher priority suppresses gold's reward.
    kinds = [(f.kind, f.lower.rule.id, f.upper.rule.id, f.pays_twice, f.range_text())
             for f in family.findings]
    assert kinds == [("gap", "bronze", "silver", False, "[₹4,000, ₹5,000)"),
                     ("overlap", "silver", "gold", True, "[₹10,000, ₹10,000]"),
                     ("overlap", "gold", "platinum", False, "[₹50,000, ∞)")]


@pytest.mark.parametrize(("low", "high", "warned"), [
    ("referee.first_payment < ₹10,000", "referee.first_payment >= ₹10,000", None),
    ("referee.first_payment <= ₹9,999.99", "referee.first_payment >= ₹10,000", None),  # 1 paisa
    ("referee.first_payment <= ₹9,999", "referee.first_payment >= ₹10,000", "gap"),
    ("referee.first_payment < ₹10,000", "referee.first_payment > ₹10,000", "gap"),
    ("referee.first_payment <= ₹10,000", "referee.first_payment > ₹10,000", None),
    ("referee.first_payment <= ₹10,000", "referee.first_payment >= ₹10,000", "overlap"),
    ("referee.age < 30", "referee.age >= 30", None),
    ("referee.age <= 29", "referee.age >= 30", "gap"),  # numbers may be decimals
    ("referral.created_at < 2026-02-01", "referral.created_at >= 2026-02-01", None),
    ("referral.created_at <= 2026-01-31", "referral.created_at >= 2026-02-01", None),
    ("referral.created_at <= 2026-01-30", "referral.created_at >= 2026-02-01", "gap"),
])
def test_where_two_ranges_meet(tmp_path, low, high, warned):
    _src, loaded = _load(tmp_path, (
        f"RULE low PRIORITY 1 EXCLUSIVE IF {low} THEN ISSUE ₹1\n"
        f"RULE high PRIORITY 1 EXCLUSIVE IF {high} THEN ISSUE ₹2\n"))
    (family,) = tier_families(loaded.program)
    assert [f.kind for f in family.findings] == ([warned] if warned else [])
    assert len(loaded.warnings) == (1 if warned else 0)


def test_tiers_need_the_same_other_conditions(tmp_path):
    _src, loaded = _load(tmp_path, (
        'RULE india EXCLUSIVE IF referee.country = "IN" AND referee.first_payment >= ₹1,000 '
        "THEN ISSUE ₹1\n"
        'RULE usa EXCLUSIVE IF referee.country = "US" AND referee.first_payment >= ₹5,000 '
        "THEN ISSUE ₹2\n"
        "RULE other IF referee.first_payment >= ₹1,000 AND referee.first_payment < ₹2,000 "
        "THEN ISSUE ₹3\n"))  # not EXCLUSIVE: not a tier
    assert tier_families(loaded.program) == []


def test_different_currencies_are_different_families(tmp_path):
    _src, loaded = _load(tmp_path, (
        "CURRENCY INR\n"
        "RULE a EXCLUSIVE IF x.amount >= ₹1,000 THEN ISSUE ₹1\n"
        "RULE b EXCLUSIVE IF x.amount >= USD 1,000 THEN ISSUE ₹2\n"))
    assert tier_families(loaded.program) == []


def test_grouping_is_linear():
    """10,000 tier rules in 1,000 families of ten: grouped by field, never all pairs."""
    from dsl.parser import parse_text
    from dsl.program import resolve_program

    lines = []
    for f in range(1000):
        for t in range(10):
            lines.append(f"RULE r{f}_{t} PRIORITY {t} EXCLUSIVE IF x.f{f} >= {t * 10} "
                         f"AND x.f{f} < {t * 10 + 10} THEN ISSUE ₹1")
    program, _ = resolve_program(parse_text("\n".join(lines), "big.rule"))
    started = time.perf_counter()
    families = tier_families(program)
    elapsed = time.perf_counter() - started
    assert len(families) == 1000 and all(f.findings == () for f in families)
    assert elapsed < 2.0, elapsed
