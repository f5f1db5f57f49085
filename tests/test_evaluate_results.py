"""What the generated evaluator records per rule: None, the rewards list, or a SparseOutcome."""

from __future__ import annotations

from dsl.evaluate import RuleOutcome, SparseOutcome, compile_program
from dsl.evaluate.results import Evaluation, Recorded, Reward
from dsl.money import Money
from dsl.parser import parse_text

PROGRAM = """\
RULE fixed PRIORITY 3 IF a.x THEN ISSUE ₹5 AND ISSUE ₹2 REWARD TO referee
RULE top PRIORITY 2 EXCLUSIVE IF a.top THEN ISSUE ₹9
RULE share PRIORITY 1 IF a.x THEN ISSUE 10% OF a.paid REWARD TO referrer
  REVERSE IF a.refunded
"""


def records(evaluation: Evaluation) -> dict[str, Recorded]:
    return dict(zip(evaluation._rule_ids, evaluation._sparse, strict=True))


def test_generated_path_records_sparse_outcomes() -> None:
    compiled = compile_program(parse_text(PROGRAM), default_currency="INR")
    ev = compiled.evaluate({"a": {"x": True, "top": True, "paid": 1000, "refunded": True}})
    got = records(ev)
    five, two = (Reward("fixed", "referrer", Money(500, "INR")),
                 Reward("fixed", "referee", Money(200, "INR")))
    nine, share = Reward("top", "referrer", Money(900, "INR")), Reward(
        "share", "referrer", Money(100, "INR"))
    assert got["fixed"] == SparseOutcome(True, (five, two), False, (), None)
    assert got["top"] == SparseOutcome(True, (nine,), False, (), None)
    assert got["share"] == SparseOutcome(True, [], True, (share,), "top")
    assert ev.active_outcomes[2] == RuleOutcome("share", True, [], True, [share], "top")
    assert records(compiled.evaluate({"a": {"x": False}})) == dict.fromkeys(got)
    only_reverse = records(compiled.evaluate({"a": {"refunded": True}}))["share"]
    assert only_reverse == SparseOutcome(False, (), True, (), None)
    plain = compiled.evaluate({"a": {"x": True, "paid": 1000}})
    assert records(plain)["share"] == [share]
    assert plain.active_outcomes[1] == RuleOutcome("share", True, [share])


def test_shared_records_are_copied_into_each_outcome() -> None:
    compiled = compile_program(parse_text(PROGRAM), default_currency="INR")
    first = compiled.evaluate({"a": {"x": True}})
    first.outcomes[0].rewards.clear()
    second = compiled.evaluate({"a": {"x": True}})
    assert len(second.outcomes[0].rewards) == 2
    assert second == compiled.evaluate_closures({"a": {"x": True}})
