"""The referral context a program reads: building it, reading it, showing it.

A context is nested mappings (``a.b`` is ``ctx["a"]["b"]``) as settlement's
record reader and the EXAMPLE blocks make it.  A path that is not there reads
as ``MISSING``, which no value equals; traces show values through ``jsonable``.
The function types at the end are the shapes both evaluators compile to.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime, tzinfo
from decimal import Decimal
from typing import Any, Final

from dsl.errors import EvaluationError
from dsl.evaluate.results import Reward, TraceStep
from dsl.model import FieldRef
from dsl.money import Money, format_money
from dsl.timeutil import day_of, temporal


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()  # what a path that is not in the context reads as

Context = Mapping[str, Any]
Trace = list[TraceStep] | None
# A compiled condition: (context, trace or None, depth in the trace) -> holds?
CondFn = Callable[[Context, Trace, int], bool]
# A comparison once the field's value is read: (value, context) -> (holds, why not).
TestFn = Callable[[Any, Context], tuple[bool, str]]
# A compiled action: the reward it pays, or why it pays nothing.
ActionFn = Callable[[Context], Reward | str]


def nest_context(pairs: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """Dotted paths and values -> the nested context rules read (``a.b`` is ``ctx["a"]["b"]``).

    A path that has a value and also fields under it is an EvaluationError.
    """
    ctx: dict[str, Any] = {}
    for path, value in pairs:
        *parents, leaf = path.split(".")
        node = ctx
        for i, key in enumerate(parents):
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                parent = ".".join(parents[: i + 1])
                raise EvaluationError(f"{path} conflicts with {parent}, which has a value")
        if isinstance(node.get(leaf), dict):
            raise EvaluationError(f"{path} has a value and also fields under it")
        node[leaf] = value
    return ctx


def getter(path: str) -> Callable[[Context], Any]:
    """A function reading ``path`` from a context (``MISSING`` when it is not there)."""
    keys = tuple(path.split("."))

    def get(ctx: Context) -> Any:
        cur: Any = ctx
        for k in keys:
            if not isinstance(cur, Mapping) or k not in cur:
                return MISSING
            cur = cur[k]
        return cur

    return get


def iso_date(value: Any, tz: tzinfo = UTC) -> date | None:
    """The date ``value`` falls on in ``tz`` (``dsl.timeutil``); None for what is not a date."""
    found = temporal(value, tz)
    return None if found is None else day_of(found)


def jsonable(value: Any) -> Any:
    """A value as it is shown in traces (JSON-serialisable, money as text)."""
    if isinstance(value, Money):
        return format_money(value)
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, FieldRef):
        return {"field": value.path}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if value is MISSING:
        return None
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    return repr(value)
