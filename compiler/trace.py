"""An evaluation trace as text for people: ``rules eval``'s listing and the catalog's notes.

A trace (``RuleOutcome.trace``) is one step per condition evaluated, in the
pre-order of ``dsl.model.walk``, each a JSON-ready dict (``kind``, ``depth``,
``result``, and for comparisons ``path``, ``op``, ``expected``, ``actual``).
``format_trace`` lists a whole evaluation, a step a line; ``step_note`` says in
a few words why one step came out as it did (the catalog's tooltips).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from dsl.evaluate import Evaluation

_RESULT = {True: "true", False: "false", None: "skipped"}


def _value(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _other_field(expected: Any) -> Any:
    """The field a comparison was made with (``{"field": path}`` in a trace), else as is."""
    return expected["field"] if isinstance(expected, dict) and "field" in expected else expected


def step_text(step: Mapping[str, Any]) -> str:
    """One step as ``referee.plan = "paid" (actual: "free") -> false``."""
    kind = step["kind"]
    if kind in {"compare", "within"}:
        expected = step["expected"]
        if kind == "within" or (isinstance(expected, dict) and "field" in expected):
            shown = _other_field(expected)
        else:
            shown = _value(expected)
        text = f"{step['path']} {step['op']} {shown}"
        if "actual" in step and not step.get("missing"):
            text += f" (actual: {_value(step['actual'])}"
            if "other_actual" in step:
                text += f" vs {_value(step['other_actual'])}"
            text += ")"
    elif kind == "action":
        text = "action"
    else:
        text = kind.upper().replace("_", " ")
    reason = f" ({step['reason']})" if step.get("reason") else ""
    return f"{text} -> {_RESULT[step.get('result')]}{reason}"


def step_note(step: Mapping[str, Any]) -> str:
    """Why a step came out as it did: its reason, else the values it compared."""
    if step.get("reason"):
        return str(step["reason"])
    if "actual" not in step:
        return ""
    note = f"{step['path']} was {_value(step['actual'])}"
    if "other_actual" in step:
        note += f", {_other_field(step['expected'])} was {_value(step['other_actual'])}"
    return note


def format_trace(evaluation: Evaluation) -> str:
    """The evaluation as indented text: each rule, each condition, the rewards."""
    lines: list[str] = []
    for o in evaluation.outcomes:
        state = "matched" if o.matched else "not matched"
        extra = ", REVERSE IF holds" if o.reverse else ""
        lines.append(f"rule {o.rule_id}: {state}{extra}")
        for step in o.trace or []:
            lines.append("  " * (step.get("depth", 0) + 1) + step_text(step))
        for r in o.rewards:
            capped = " (capped)" if r.capped else ""
            lines.append(f"  -> ISSUE {r.amount} TO {r.role}{capped}")
        for r in o.suppressed:
            lines.append(f"  -> suppressed by {o.suppressed_by}: ISSUE {r.amount} TO {r.role}")
    lines.append("rewards:" if evaluation.rewards else "rewards: none")
    for r in evaluation.rewards:
        lines.append(f"  {r.rule_id}: ISSUE {r.amount} TO {r.role}")
    return "\n".join(lines)


__all__ = ["format_trace", "step_note", "step_text"]
