"""The references settlement posts under: one deterministic name per grant.

A *key* is (rule id, referral id, role): what one rule owes one referral's
referrer or referee.  Its first grant is ``reward:<rule id>:<referral id>:<role>``
(the reference of every reward posted before reconciliation existed); each later
grant of the same key (an increase, a replacement after a decrease, the reward
moved to a corrected beneficiary, a grant again after a reversal) appends
``#<n>``, n = 2, 3, ...  A reversal is ``reversal:<reference>``.  So a rerun
computes the same names from the same ledger, and the ledger's unique
reference refuses a second posting of any of them.
"""

from __future__ import annotations

from typing import NamedTuple

REWARD_PREFIX = "reward:"
# Every reference fits the ledger's VARCHAR(255).  The longest one settlement builds is
# a reversal of a later grant: "reversal:" + "reward:" + rule id + ":" + referral id + ":"
# + role + "#" + sequence number.
MAX_REFERENCE_CHARS = 255
MAX_ROLE_CHARS = len("referrer")
MAX_SEQ_DIGITS = 6
_FIXED_CHARS = len("reversal:") + len(REWARD_PREFIX) + 1 + 1 + MAX_ROLE_CHARS + 1 + MAX_SEQ_DIGITS


class Key(NamedTuple):
    rule_id: str
    referral_id: str
    role: str


def reward_reference(rule_id: str, referral_id: str, role: str, seq: int = 1) -> str:
    base = f"{REWARD_PREFIX}{rule_id}:{referral_id}:{role}"
    return base if seq == 1 else f"{base}#{seq}"


def grant_seq(reference_id: str) -> int:
    """The sequence number of a grant's reference (1 for the first grant)."""
    head, sep, tail = reference_id.rpartition("#")
    if sep and tail.isdigit() and head.startswith(REWARD_PREFIX):
        return int(tail)
    return 1


def fits(rule_id: str, referral_id: str) -> bool:
    """Whether every reference of the key, reversals of later grants included, fits."""
    return _FIXED_CHARS + len(rule_id) + len(referral_id) <= MAX_REFERENCE_CHARS


def max_referral_id_chars(rule_ids: list[str]) -> int:
    """The longest referral id whose references fit with every one of ``rule_ids``."""
    longest = max((len(r) for r in rule_ids), default=0)
    return MAX_REFERENCE_CHARS - _FIXED_CHARS - longest
