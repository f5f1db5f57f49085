"""What evaluating a program on one context gives: rewards, and an outcome per rule.

``Evaluation`` is the one result type of both evaluators.  The closure
interpreter (``interpreter``) fills in every ``RuleOutcome`` with its trace;
the generated fast path (``codegen``) leaves one ``Recorded`` per rule, and
``Evaluation`` makes ``RuleOutcome`` objects of them only when they are read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from dsl.model import Role
from dsl.money import Money

# One step of a trace: what was compared, with what, and the result (JSON-ready).
TraceStep = dict[str, Any]


@dataclass(frozen=True)
class Reward:
    rule_id: str
    role: Role
    amount: Money
    capped: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "rule_id": self.rule_id,
            "role": self.role,
            "amount": self.amount.amount,
            "currency": self.amount.currency,
            "capped": self.capped,
        }


@dataclass
class RuleOutcome:
    rule_id: str
    matched: bool
    rewards: list[Reward] = field(default_factory=list)
    reverse: bool = False
    suppressed: list[Reward] = field(default_factory=list)
    suppressed_by: str | None = None
    trace: list[TraceStep] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "rule_id": self.rule_id,
            "matched": self.matched,
            "rewards": [r.to_json() for r in self.rewards],
            "reverse": self.reverse,
            "suppressed": [r.to_json() for r in self.suppressed],
            "suppressed_by": self.suppressed_by,
            "trace": self.trace,
        }


class SparseOutcome(NamedTuple):
    """A rule's outcome as the generated evaluator records it, when a list will not do
    (see ``Recorded``).

    A tuple, so that generated code builds it at the cost of a tuple, or shares
    one built at compile time when nothing in it varies (a rule paying fixed
    amounts); its sequences are copied into the RuleOutcome made from it.
    """

    matched: bool
    rewards: Sequence[Reward]  # paid, after EXCLUSIVE suppression
    reverse: bool  # its REVERSE IF holds
    suppressed: Sequence[Reward]
    suppressed_by: str | None  # the EXCLUSIVE rule that suppressed them


# What the generated evaluator records for one rule:
#   None           it did not match and its REVERSE IF (if any) does not hold;
#   list[Reward]   it matched and paid these, suppressed none, and its REVERSE IF (if any)
#                  does not hold: the common case, which then costs nothing beyond the list
#                  (a SparseOutcome for every match made rules/ 5% slower to evaluate);
#   SparseOutcome  anything else.
Recorded = SparseOutcome | list[Reward] | None


class Evaluation:
    """The rewards a context earns, and one outcome per rule (in evaluation order).

    Made either from every rule's ``RuleOutcome`` or from the generated path's
    records, one ``Recorded`` per rule: ``outcomes`` fills in the rules that
    recorded None as not matched when first read, and ``active_outcomes`` skips
    them, which is all that settlement needs.
    """

    __slots__ = ("rewards", "_outcomes", "_sparse", "_active", "_rule_ids")

    def __init__(
        self,
        rewards: list[Reward],
        outcomes: list[RuleOutcome] | None = None,
        sparse: Sequence[Recorded] = (),
        rule_ids: Sequence[str] = (),
    ) -> None:
        self.rewards = rewards
        self._outcomes = outcomes
        self._sparse = sparse
        self._rule_ids = rule_ids
        self._active: list[RuleOutcome | None] | None = None

    def _recorded(self) -> list[RuleOutcome | None]:
        """The sparse records as RuleOutcome objects, made once."""
        if self._active is None:
            self._active = [
                None if o is None
                else RuleOutcome(rule_id, True, o) if isinstance(o, list)
                else RuleOutcome(rule_id, o.matched, [*o.rewards], o.reverse, [*o.suppressed],
                                 o.suppressed_by)
                for rule_id, o in zip(self._rule_ids, self._sparse, strict=True)
            ]
        return self._active

    @property
    def outcomes(self) -> list[RuleOutcome]:
        if self._outcomes is None:
            self._outcomes = [
                o if o is not None else RuleOutcome(rule_id, False)
                for rule_id, o in zip(self._rule_ids, self._recorded(), strict=True)
            ]
        return self._outcomes

    @property
    def active_outcomes(self) -> list[RuleOutcome]:
        """Outcomes of rules that matched or whose REVERSE IF holds, in evaluation order."""
        if self._outcomes is None:
            return [o for o in self._recorded() if o is not None]
        return [o for o in self._outcomes if o.matched or o.reverse]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Evaluation):
            return NotImplemented
        return (self.rewards, self.outcomes) == (other.rewards, other.outcomes)

    def __repr__(self) -> str:
        return f"Evaluation(rewards={self.rewards!r}, outcomes={self.outcomes!r})"

    def to_json(self) -> dict[str, Any]:
        return {
            "rewards": [r.to_json() for r in self.rewards],
            "outcomes": [o.to_json() for o in self.outcomes],
        }
