"""The example program in ``rules/``, written by hand as plain Python.

The baseline for rule evaluation: what a developer would write without a rule
language.  It returns the same decisions as ``CompiledProgram.evaluate``
(rewards in evaluation order as ``(rule_id, role, minor units)``, and the
rules whose REVERSE IF holds); ``bench.evaluation`` checks that on a sample
before timing.  Amounts are integer paise; 10% and 5% round down as the DSL does.
"""

from __future__ import annotations

from datetime import date
from typing import Any

Decision = tuple[tuple[tuple[str, str, int], ...], tuple[str, ...]]


def _day(value: Any) -> date | None:
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            return None
    return value if isinstance(value, date) else None


def evaluate(ctx: dict[str, Any]) -> Decision:
    referrer = ctx.get("referrer") or {}
    referee = ctx.get("referee") or {}
    referral = ctx.get("referral") or {}
    subscribed = referee.get("subscribed") is True
    refunded = referee.get("refunded") is True
    referee_id, referrer_id = referee.get("id"), referrer.get("id")
    not_self = not (referee_id is not None and referrer_id is not None
                    and referee_id == referrer_id)
    payment = referee.get("first_payment")
    rewards: list[tuple[str, str, int]] = []
    reversed_: list[str] = []
    referrer_claimed = False  # an EXCLUSIVE rule of priority 20 paid the referrer

    # gold_tier: PRIORITY 20 EXCLUSIVE
    if subscribed and not_self and payment is not None and payment >= 1_000_000:
        amount = min(payment * 5 // 100, 100_000)
        if amount > 0:
            rewards.append(("gold_tier", "referrer", amount))
            referrer_claimed = True
    if refunded:
        reversed_.append("gold_tier")
    # silver_tier: PRIORITY 20 EXCLUSIVE
    if subscribed and not_self and payment is not None and 500_000 <= payment < 1_000_000:
        rewards.append(("silver_tier", "referrer", 30_000))
        referrer_claimed = True
    if refunded:
        reversed_.append("silver_tier")
    # paid_referrer_bonus: PRIORITY 10
    if (
        referrer.get("plan") == "paid"
        and subscribed
        and (referee.get("country") in ("IN", "US") or (payment is not None and payment >= 100_000))
        and not_self
    ):
        start = _day(referral.get("created_at"))
        subscribed_at = _day(referee.get("subscribed_at"))
        if (start is not None and subscribed_at is not None
                and abs((subscribed_at - start).days) <= 30):
            if not referrer_claimed:
                rewards.append(("paid_referrer_bonus", "referrer", 50_000))
            if payment is not None:
                share = min(payment * 10 // 100, 20_000)
                if share > 0:
                    rewards.append(("paid_referrer_bonus", "referee", share))
    if refunded:
        reversed_.append("paid_referrer_bonus")
    # free_referrer_welcome: PRIORITY 5
    if referrer.get("plan") == "free" and subscribed and not_self:
        if not referrer_claimed:
            rewards.append(("free_referrer_welcome", "referrer", 10_000))
        rewards.append(("free_referrer_welcome", "referee", 10_000))
    # annual_plan_cashback: PRIORITY 3
    if subscribed and referee.get("plan") == "annual" and not_self:
        rewards.append(("annual_plan_cashback", "referee", 25_000))
    if refunded:
        reversed_.append("annual_plan_cashback")
    return tuple(rewards), tuple(reversed_)
