"""What drafting returns: the rule (or none), how each part was read, what was not."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from dsl.errors import ReferralError
from dsl.model import Action, Condition, Limit, Rule
from dsl.money import Money

Source = Literal["vocabulary", "field", "keyword", "amount"]


@dataclass(frozen=True)
class Mapped:
    """Words of the sentence and what they became: a model node, or keyword text."""

    words: str
    became: Condition | Action | Limit | Money | str
    source: Source
    start: int = field(default=-1, compare=False)  # where the words are in the sentence


@dataclass(frozen=True)
class Unmapped:
    """Words nothing matched, the closest things they could have meant, and why."""

    words: str
    candidates: tuple[Condition | str, ...] = ()
    reason: str | None = None


@dataclass(frozen=True)
class Draft:
    """A rule only when every content word was mapped and the readings agree."""

    rule: Rule | None
    mapping: tuple[Mapped, ...] = ()
    unmapped: tuple[Unmapped, ...] = ()
    problems: tuple[str, ...] = ()
    # Two readings of the sentence that both map, to different rules.
    alternatives: tuple[Rule, ...] = ()


class DraftError(ReferralError):
    """A sentence that could not be drafted into a checked rule (exit 1)."""


__all__ = ["Draft", "DraftError", "Mapped", "Source", "Unmapped"]
