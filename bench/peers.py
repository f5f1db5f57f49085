"""The same rule conditions in the peer engines: ``rule-engine`` and ``business-rules``.

Both engines only decide whether a condition holds, so each rule here is a
matcher for its condition (and one for its REVERSE IF) and the decisions are
made by ``decide``: the rewards of the rules that match, in evaluation order,
with EXCLUSIVE suppression, amounts from the program model with integer
arithmetic.  That Python is the same for every peer (and is what the
hand-written versions do inline); only condition evaluation differs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from dsl.model import FixedReward, PercentReward, Program, Rule

Decision = tuple[tuple[tuple[str, str, int], ...], tuple[str, ...]]
Matcher = Callable[[Mapping[str, Any]], bool]


@dataclass(frozen=True)
class PeerRule:
    rule: Rule
    matches: Matcher
    reverses: Matcher | None
    # (role, fixed amount) or (role, n, d, cap, path): n/d of the amount at path, up to cap
    actions: tuple[tuple[Any, ...], ...]


def _lookup(ctx: Mapping[str, Any], path: str) -> Any:
    cur: Any = ctx
    for part in path.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            return None
        cur = cur[part]
    return cur


def peer_rules(program: Program, matchers: Mapping[str, tuple[Matcher, Matcher | None]]
               ) -> list[PeerRule]:
    """The program's rules in evaluation order, each with a peer's matchers."""
    out = []
    for rule in program.by_priority():
        actions: list[tuple[Any, ...]] = []
        for a in rule.actions:
            if isinstance(a, FixedReward):
                actions.append((a.to, a.amount.amount))
            else:
                assert isinstance(a, PercentReward)
                n, d = (a.percent / Decimal(100)).as_integer_ratio()
                actions.append((a.to, n, d, a.cap.amount if a.cap else None, a.of))
        match, reverse = matchers[rule.id]
        out.append(PeerRule(rule, match, reverse, tuple(actions)))
    return out


def decide(rules: Sequence[PeerRule], ctx: Mapping[str, Any]) -> Decision:
    rewards: list[tuple[str, str, int]] = []
    reversed_: list[str] = []
    claims: dict[str, int] = {}
    for pr in rules:
        rule = pr.rule
        if pr.matches(ctx):
            kept = []
            for action in pr.actions:
                if len(action) == 2:
                    role, amount = action
                else:
                    role, n, d, cap, path = action
                    base = _lookup(ctx, path)
                    if base is None:
                        continue
                    amount = base * n // d
                    if cap is not None and amount > cap:
                        amount = cap
                    if amount <= 0:
                        continue
                if claims.get(role, -1) > rule.priority:
                    continue
                kept.append((rule.id, role, amount))
            rewards += kept
            if rule.exclusive:
                for _, role, _ in kept:
                    claims.setdefault(role, rule.priority)
        if pr.reverses is not None and pr.reverses(ctx):
            reversed_.append(rule.id)
    return tuple(rewards), tuple(reversed_)


# ---- rule-engine (PyPI ``rule-engine``) ---------------------------------------

RULE_ENGINE_EXAMPLE = {
    # Missing keys: ``x&['k']`` is null when k is absent, so comparisons are false.
    "paid_referrer_bonus": (
        "referrer&['plan'] == 'paid' and referee&['subscribed'] == true"
        " and (referee&['country'] in ['IN', 'US'] or"
        "      (referee&['first_payment'] != null and referee['first_payment'] >= 100000))"
        " and not (referee&['id'] != null and referee&['id'] == referrer&['id'])"
        " and referee&['subscribed_at'] != null and referral&['created_at'] != null"
        " and $abs(($parse_datetime(referee['subscribed_at'])"
        "           - $parse_datetime(referral['created_at'])).days) <= 30",
        "referee&['refunded'] == true",
    ),
    "gold_tier": (
        "referee&['subscribed'] == true"
        " and not (referee&['id'] != null and referee&['id'] == referrer&['id'])"
        " and referee&['first_payment'] != null and referee['first_payment'] >= 1000000",
        "referee&['refunded'] == true",
    ),
    "silver_tier": (
        "referee&['subscribed'] == true"
        " and not (referee&['id'] != null and referee&['id'] == referrer&['id'])"
        " and referee&['first_payment'] != null and referee['first_payment'] >= 500000"
        " and referee['first_payment'] < 1000000",
        "referee&['refunded'] == true",
    ),
    "free_referrer_welcome": (
        "referrer&['plan'] == 'free' and referee&['subscribed'] == true"
        " and not (referee&['id'] != null and referee&['id'] == referrer&['id'])",
        None,
    ),
    "annual_plan_cashback": (
        "referee&['subscribed'] == true and referee&['plan'] == 'annual'"
        " and not (referee&['id'] != null and referee&['id'] == referrer&['id'])",
        "referee&['refunded'] == true",
    ),
}


def rule_engine_rules(program: Program, texts: Mapping[str, tuple[str, str | None]]
                      ) -> list[PeerRule]:
    import rule_engine

    context = rule_engine.Context(default_value=None)

    def matcher(text: str | None) -> Matcher | None:
        return None if text is None else rule_engine.Rule(text, context=context).matches

    return peer_rules(program, {rid: (matcher(m), matcher(r))  # type: ignore[misc]
                                for rid, (m, r) in texts.items()})


# ---- business-rules (PyPI ``business-rules``) ---------------------------------


def _day(value: Any) -> date | None:
    try:
        return date.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def example_variables() -> type:
    """business-rules variables for the example program (one instance per context)."""
    from business_rules.variables import (
        BaseVariables,
        boolean_rule_variable,
        numeric_rule_variable,
        string_rule_variable,
    )

    class ReferralVariables(BaseVariables):
        def __init__(self, ctx: Mapping[str, Any]) -> None:
            self.referrer = ctx.get("referrer") or {}
            self.referee = ctx.get("referee") or {}
            self.referral = ctx.get("referral") or {}

        @string_rule_variable
        def referrer_plan(self) -> str:
            return self.referrer.get("plan") or ""

        @string_rule_variable
        def referee_plan(self) -> str:
            return self.referee.get("plan") or ""

        @string_rule_variable
        def referee_country(self) -> str:
            return self.referee.get("country") or ""

        @boolean_rule_variable
        def referee_subscribed(self) -> bool:
            return self.referee.get("subscribed") is True

        @boolean_rule_variable
        def referee_refunded(self) -> bool:
            return self.referee.get("refunded") is True

        @boolean_rule_variable
        def referee_is_referrer(self) -> bool:
            a, b = self.referee.get("id"), self.referrer.get("id")
            return a is not None and b is not None and a == b

        @boolean_rule_variable
        def has_first_payment(self) -> bool:
            return self.referee.get("first_payment") is not None

        @numeric_rule_variable
        def first_payment(self) -> int:
            return self.referee.get("first_payment") or 0

        @numeric_rule_variable
        def days_from_referral_to_subscription(self) -> int:
            a = _day(self.referee.get("subscribed_at"))
            b = _day(self.referral.get("created_at"))
            return abs((a - b).days) if a is not None and b is not None else 10**9

    return ReferralVariables


def _is(name: str, truth: bool = True) -> dict[str, Any]:
    return {"name": name, "operator": "is_true" if truth else "is_false", "value": True}


def _cmp(name: str, operator: str, value: Any) -> dict[str, Any]:
    return {"name": name, "operator": operator, "value": value}


NOT_SELF = _is("referee_is_referrer", False)
REFUNDED = {"all": [_is("referee_refunded")]}
BUSINESS_RULES_EXAMPLE: dict[str, tuple[dict[str, Any], dict[str, Any] | None]] = {
    "paid_referrer_bonus": ({"all": [
        _cmp("referrer_plan", "equal_to", "paid"), _is("referee_subscribed"),
        {"any": [_cmp("referee_country", "equal_to", "IN"),
                 _cmp("referee_country", "equal_to", "US"),
                 {"all": [_is("has_first_payment"),
                          _cmp("first_payment", "greater_than_or_equal_to", 100000)]}]},
        NOT_SELF, _cmp("days_from_referral_to_subscription", "less_than_or_equal_to", 30),
    ]}, REFUNDED),
    "gold_tier": ({"all": [
        _is("referee_subscribed"), NOT_SELF, _is("has_first_payment"),
        _cmp("first_payment", "greater_than_or_equal_to", 1000000),
    ]}, REFUNDED),
    "silver_tier": ({"all": [
        _is("referee_subscribed"), NOT_SELF, _is("has_first_payment"),
        _cmp("first_payment", "greater_than_or_equal_to", 500000),
        _cmp("first_payment", "less_than", 1000000),
    ]}, REFUNDED),
    "free_referrer_welcome": ({"all": [
        _cmp("referrer_plan", "equal_to", "free"), _is("referee_subscribed"), NOT_SELF,
    ]}, None),
    "annual_plan_cashback": ({"all": [
        _is("referee_subscribed"), _cmp("referee_plan", "equal_to", "annual"), NOT_SELF,
    ]}, REFUNDED),
}


def business_rules_decider(
    program: Program, variables: type, conditions: Mapping[str, tuple[Any, Any]]
) -> Callable[[Mapping[str, Any]], Decision]:
    """decide() with business-rules' own condition walk (``check_conditions_recursively``,
    what ``run_all`` runs per rule), on one variables object per context."""
    from business_rules.engine import check_conditions_recursively

    current: list[Any] = [None]

    def matcher(cond: Any) -> Matcher | None:
        if cond is None:
            return None
        return lambda _ctx: check_conditions_recursively(cond, current[0])

    rules = peer_rules(program, {rid: (matcher(m), matcher(r))  # type: ignore[misc]
                                 for rid, (m, r) in conditions.items()})

    def run(ctx: Mapping[str, Any]) -> Decision:
        current[0] = variables(ctx)
        return decide(rules, ctx)

    return run
