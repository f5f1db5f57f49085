"""Evaluating a resolved program on referral contexts.

``compile_program`` compiles a program once (``interpreter``: closures, and
``codegen``: one generated function for the untraced path); ``evaluate`` on the
result gives an ``Evaluation`` (``results``).  ``context`` builds and reads the
nested contexts rules are evaluated on.
"""

from __future__ import annotations

from dsl.evaluate.context import iso_date, jsonable, nest_context
from dsl.evaluate.interpreter import CompiledProgram, CompiledRule, compile_program, compile_rule
from dsl.evaluate.results import (
    Evaluation,
    Recorded,
    Reward,
    RuleOutcome,
    SparseOutcome,
    TraceStep,
)

__all__ = [
    "CompiledProgram",
    "CompiledRule",
    "Evaluation",
    "Recorded",
    "Reward",
    "RuleOutcome",
    "SparseOutcome",
    "TraceStep",
    "compile_program",
    "compile_rule",
    "iso_date",
    "jsonable",
    "nest_context",
]
