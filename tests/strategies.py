"""Hypothesis strategies for rule models.

They generate programs the language can write: normalised condition trees (no
AND directly inside AND, no OR inside OR, at least two items each), dotted
field paths that are not keywords, unique rule ids, examples with at least one
GIVEN pair.  ``programs(phrases=True)`` also uses vocabulary phrases, each
defined by a DEFINE of the same program, the way an unresolved file looks.
"""

from __future__ import annotations

import string
from datetime import date
from decimal import Decimal

from hypothesis import strategies as st

from dsl.model import (
    DIRECTIONS,
    LIMIT_PERS,
    PERIODS,
    ROLES,
    And,
    Compare,
    Condition,
    Definition,
    Example,
    ExpectedReward,
    FieldRef,
    FixedReward,
    Limit,
    Not,
    Or,
    PercentReward,
    PhraseRef,
    Program,
    Rule,
    Within,
)
from dsl.money import CURRENCY_EXPONENTS, Money

# Words the language reserves (any case); generated identifiers avoid them.
KEYWORDS = frozenset(
    """and or not if then is in contains within days day of define as rule priority
    exclusive issue reward to up limit per month year ever hold reverse example given
    expect nothing true false null after before from currency timezone""".split()
)

_WORD = st.text(alphabet=string.ascii_lowercase, min_size=1, max_size=8).filter(
    lambda w: w not in KEYWORDS and w.upper() not in CURRENCY_EXPONENTS
)
_SEGMENT = st.one_of(
    st.sampled_from(["id", "plan", "country", "first_payment", "subscribed", "created_at"]),
    st.from_regex(r"[a-z][a-z0-9_]{0,9}", fullmatch=True).filter(
        lambda w: w not in KEYWORDS and w.upper() not in CURRENCY_EXPONENTS
    ),
)

paths = st.builds(
    lambda root, rest: ".".join([root, *rest]),
    st.sampled_from(["referrer", "referee", "referral", "event"]),
    st.lists(_SEGMENT, min_size=1, max_size=2),
)

# One-line text, quotes and backslashes included (a rule string cannot hold a line break).
safe_text = st.text(
    alphabet=string.ascii_letters + string.digits + " _-.,:;!?'()₹$€/&\"\\\t#é",
    max_size=20,
)

money = st.builds(
    Money,
    st.integers(min_value=0, max_value=10**9),
    st.sampled_from(sorted(CURRENCY_EXPONENTS)),
)

decimals = st.decimals(
    min_value=Decimal("0.01"), max_value=Decimal("100000"), places=2, allow_nan=False
).filter(lambda d: d != d.to_integral_value())

dates = st.dates(min_value=date(2000, 1, 1), max_value=date(2099, 12, 31))

scalars = st.one_of(
    safe_text,
    st.integers(min_value=0, max_value=10**12),
    decimals,
    st.booleans(),
    dates,
    money,
)

lists = st.lists(scalars, min_size=1, max_size=4).map(tuple)


@st.composite
def compares(draw: st.DrawFn) -> Compare:
    op = draw(st.sampled_from(["=", "!=", ">", ">=", "<", "<=", "IS", "IS NOT", "IN",
                               "NOT IN", "CONTAINS"]))
    if op in ("IN", "NOT IN"):
        value = draw(lists)
    elif op in ("IS", "IS NOT"):
        value = draw(st.one_of(st.none(), st.booleans()))
    elif op in ("=", "!="):
        value = draw(st.one_of(scalars, st.builds(FieldRef, paths)))
    else:
        value = draw(scalars)
    return Compare(draw(paths), op, value)


withins = st.builds(Within, paths, st.integers(min_value=0, max_value=3650), paths,
                    direction=st.sampled_from(DIRECTIONS))


def conditions(
    leaves: st.SearchStrategy[Condition] | None = None, depth: int = 3
) -> st.SearchStrategy[Condition]:
    """Normalised condition trees over ``leaves`` (comparisons by default), built by
    kind rather than filtered, which keeps generation fast."""
    base = leaves if leaves is not None else st.one_of(compares(), withins)

    def groups(d: int) -> dict[str, st.SearchStrategy[Condition]]:
        if d == 0:
            return {}
        inner = groups(d - 1)

        def items(*kinds: str) -> st.SearchStrategy[Condition]:
            return st.one_of(base, *(inner[k] for k in kinds if k in inner))

        return {
            "and": st.lists(items("or", "not"), min_size=2, max_size=3).map(
                lambda xs: And(tuple(xs))
            ),
            "or": st.lists(items("and", "not"), min_size=2, max_size=3).map(
                lambda xs: Or(tuple(xs))
            ),
            "not": items("and", "or").map(Not),
        }

    return st.one_of(base, *groups(depth).values())


roles = st.sampled_from(ROLES)

actions = st.one_of(
    st.builds(FixedReward, money, roles),
    st.builds(
        PercentReward,
        st.one_of(st.integers(min_value=1, max_value=100).map(Decimal), decimals),
        paths,
        roles,
        st.one_of(st.none(), money),
    ),
)

limits = st.builds(Limit, money, st.sampled_from(LIMIT_PERS), st.sampled_from(PERIODS))

rule_ids = st.from_regex(r"[a-z][a-z0-9_]{0,15}", fullmatch=True).filter(
    lambda w: w not in KEYWORDS
)


@st.composite
def rules(draw: st.DrawFn, rule_id: str, cond: st.SearchStrategy[Condition]) -> Rule:
    return Rule(
        id=rule_id,
        description=draw(st.one_of(st.none(), safe_text)),
        condition=draw(cond),
        actions=tuple(draw(st.lists(actions, min_size=1, max_size=3))),
        priority=draw(st.integers(min_value=0, max_value=1000)),
        exclusive=draw(st.booleans()),
        limit=draw(st.one_of(st.none(), limits)),
        hold_days=draw(st.integers(min_value=0, max_value=365)),
        reverse_if=draw(st.one_of(st.none(), cond)),
        hold_from=draw(st.one_of(st.none(), paths)),
    )


examples = st.builds(
    Example,
    name=safe_text,
    given=st.lists(st.tuples(paths, st.one_of(scalars, lists)), min_size=1, max_size=4).map(
        tuple
    ),
    expect=st.lists(st.builds(ExpectedReward, roles, money), max_size=3).map(tuple),
)

phrases = st.lists(_WORD, min_size=1, max_size=5).map(" ".join)
# The parser normalises a phrase's spacing, so generated phrases are already normal.
quoted_phrases = safe_text.map(lambda s: " ".join(s.split())).filter(bool)


@st.composite
def programs(draw: st.DrawFn, *, phrase_refs: bool = False) -> Program:
    """A whole program; with ``phrase_refs`` its rules use its DEFINEd phrases."""
    defined = draw(
        st.lists(st.one_of(phrases, quoted_phrases), max_size=4, unique_by=str.lower)
    )
    definitions = tuple(Definition(p, draw(conditions())) for p in defined)
    leaves = st.one_of(compares(), withins)
    if phrase_refs and defined:
        leaves = st.one_of(leaves, st.sampled_from(defined).map(PhraseRef))
    ids = draw(st.lists(rule_ids, max_size=4, unique=True))
    return Program(
        rules=tuple(draw(rules(i, conditions(leaves))) for i in ids),
        definitions=definitions,
        examples=tuple(draw(st.lists(examples, max_size=3))),
        currency=draw(st.one_of(st.none(), st.sampled_from(["INR", "CAD", "CNY", "USD"]))),
        timezone=draw(st.one_of(st.none(), st.sampled_from(["UTC", "Asia/Kolkata",
                                                            "America/New_York"]))),
    )
