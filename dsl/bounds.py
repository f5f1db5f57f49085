"""How big a rule may be: the bounds ``rules check`` enforces, and their measurement.

Everything check accepts must evaluate, format, draw and settle without crashing,
and the code that does so recurses over conditions (the parser's transformer, the
resolver, the closures, the generated Python, the JSON codec).  So nesting, phrase
chains, literal sizes and day counts are bounded here, far above what a rule
author writes and far below what would exhaust Python's stack, and measured
without recursion, so that a text beyond a bound is refused before anything
recursive touches it.  The README's language reference states the same figures.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from dsl.model import And, Compare, Condition, Definition, Not, Or, PhraseRef, Value, phrase_key

# AND/OR/NOT groups and [lists] inside one another, phrases expanded.
MAX_NESTING = 64
# Phrases defined in terms of phrases (DEFINE "a" AS "b" ... ).
MAX_PHRASE_DEPTH = 32
# Digits of a number, percentage or money literal: Decimal's default precision, so
# every literal is exact in arithmetic.
MAX_NUMBER_DIGITS = 28
# HOLD n DAYS and WITHIN n DAYS: a hundred years.
MAX_DAYS = 36_600
# PRIORITY -n .. n (exact as a JavaScript number and in a 32-bit integer).
MAX_PRIORITY = 1_000_000_000

_GROUPS = (And, Or, Not)


def value_depth(value: Value) -> int:
    """How deep lists nest in a literal (0 for a scalar, 1 for ``[1, 2]``)."""
    deepest = 0
    stack: list[tuple[Value, int]] = [(value, 0)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, tuple):
            deepest = max(deepest, depth + 1)
            stack.extend((item, depth + 1) for item in v)
    return deepest


def _nodes(cond: Condition) -> Iterator[tuple[Condition, int, type | None]]:
    """Every node with the number of groups around it (itself included for a group) and
    the type of its parent, without recursion."""
    stack: list[tuple[Condition, int, type | None]] = [(cond, 0, None)]
    while stack:
        node, around, parent = stack.pop()
        if isinstance(node, _GROUPS):
            around += 1
            items = node.items if isinstance(node, (And, Or)) else (node.item,)
            stack.extend((item, around, type(node)) for item in items)
        yield node, around, parent


@dataclass(frozen=True)
class Expansion:
    """A condition with its phrases expanded: how deep it nests, how many phrases deep
    its definitions go, and the type of its root (a phrase's AND splices into an AND)."""

    nesting: int = 0
    phrases: int = 0
    kind: type | None = None


_NOTHING = Expansion()


def expansion(cond: Condition, phrases: Mapping[str, Expansion]) -> Expansion:
    """What ``cond`` becomes once the phrases it uses (measured in ``phrases``; an
    unknown one counts as nothing) are expanded, as ``dsl.program`` expands them."""
    nesting = depth = 0
    for node, around, parent in _nodes(cond):
        if isinstance(node, PhraseRef):
            inner = phrases.get(phrase_key(node.phrase), _NOTHING)
            spliced = parent is not None and parent is inner.kind and parent in (And, Or)
            nesting = max(nesting, around + inner.nesting - spliced)
            depth = max(depth, inner.phrases)
        elif isinstance(node, Compare):
            nesting = max(nesting, around + value_depth(node.value))
        else:
            nesting = max(nesting, around)
    kind: type | None = type(cond)
    if isinstance(cond, PhraseRef):
        kind = phrases.get(phrase_key(cond.phrase), _NOTHING).kind
    return Expansion(nesting, depth, kind)


def phrase_expansions(definitions: Mapping[str, Definition]) -> dict[str, Expansion]:
    """Each phrase's expansion (``phrases`` counting the phrase itself), by phrase key.

    A depth-first walk over the phrases' uses with an explicit stack: a chain of
    thousands of DEFINEs is measured, not recursed into.  A phrase used inside its
    own definition counts as nothing here (the resolver reports the cycle).
    """
    uses = {key: [phrase_key(n.phrase) for n, _a, _p in _nodes(d.condition)
                  if isinstance(n, PhraseRef)]
            for key, d in definitions.items()}
    done: dict[str, Expansion] = {}
    started: set[str] = set()
    for root in definitions:
        stack = [root]
        while stack:
            key = stack[-1]
            if key in done:
                stack.pop()
                continue
            if key not in started:
                started.add(key)
                pending = [k for k in uses[key] if k in definitions and k not in started]
                if pending:
                    stack.extend(pending)
                    continue
            found = expansion(definitions[key].condition, done)
            done[key] = Expansion(found.nesting, found.phrases + 1, found.kind)
            stack.pop()
    return done


__all__ = [
    "MAX_DAYS",
    "MAX_NESTING",
    "MAX_NUMBER_DIGITS",
    "MAX_PHRASE_DEPTH",
    "MAX_PRIORITY",
    "Expansion",
    "expansion",
    "phrase_expansions",
    "value_depth",
]
