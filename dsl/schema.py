"""JSON given as a rule model: validate it against the published schema, then build the model.

The schema (``dsl/rule-model.schema.json``, shipped with the package) is the
contract for other tools; every violation is reported with its JSON path, all
at once, so a hand-edited or generated model can be fixed in one pass.
"""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator

from dsl.errors import ModelSchemaError, SourcePos
from dsl.model import (
    SCHEMA_VERSION,
    Action,
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
    Value,
    Within,
)
from dsl.money import Money

SCHEMA_FILE = "rule-model.schema.json"


@cache
def model_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the rule model."""
    return json.loads(resources.files("dsl").joinpath(SCHEMA_FILE).read_text(encoding="utf-8"))


@cache
def _validator() -> Draft202012Validator:
    return Draft202012Validator(model_schema(), format_checker=Draft202012Validator.FORMAT_CHECKER)


def schema_errors(data: Any) -> list[str]:
    """Every schema violation as ``<json path>: <message>``, in document order."""
    errors = sorted(_validator().iter_errors(data), key=lambda e: _path_key(e.absolute_path))
    return [f"{e.json_path}: {e.message}" for e in errors]


def _path_key(path: Any) -> list[tuple[int, int, str]]:
    return [(0, p, "") if isinstance(p, int) else (1, 0, str(p)) for p in path]


def validate_model_json(data: Any, filename: str = "<json>") -> None:
    """Raise ModelSchemaError listing every error (``file: $.path: message``), if any."""
    version = data.get("schema_version") if isinstance(data, dict) else None
    if isinstance(data, dict) and "schema_version" in data and version != SCHEMA_VERSION:
        raise ModelSchemaError(
            f"{filename}: $.schema_version: unsupported schema_version {version!r} "
            f"(this version reads schema_version {SCHEMA_VERSION})"
        )
    errors = schema_errors(data)
    if errors:
        raise ModelSchemaError("\n".join(f"{filename}: {e}" for e in errors))


def program_from_json(data: Any, filename: str = "<json>") -> Program:
    """Validate ``data`` and build exactly the Program that ``program_to_json`` encoded."""
    validate_model_json(data, filename)
    return Program(
        rules=tuple(_rule(r) for r in data["rules"]),
        definitions=tuple(
            Definition(d["phrase"], _condition(d["condition"]), _source(d))
            for d in data["definitions"]
        ),
        examples=tuple(_example(e) for e in data["examples"]),
        schema_version=data["schema_version"],
    )


def _source(data: dict[str, Any]) -> SourcePos | None:
    s = data.get("source")
    return SourcePos(s["file"], s["line"], s["column"]) if s else None


def _money(data: dict[str, Any]) -> Money:
    return Money(int(data["amount"]), data["currency"])


def _value(data: dict[str, Any]) -> Value:
    ((kind, v),) = data.items()
    if kind == "string":
        return v
    if kind == "int":
        return int(v)
    if kind == "decimal":
        return Decimal(v)
    if kind == "bool":
        return v
    if kind == "date":
        return date.fromisoformat(v)
    if kind == "money":
        return _money(v)
    if kind == "list":
        return tuple(_value(x) for x in v)
    if kind == "field":
        return FieldRef(v)
    return None


def _condition(data: dict[str, Any]) -> Condition:
    ((kind, v),) = data.items()
    if kind == "compare":
        return Compare(v["path"], v["op"], _value(v["value"]))
    if kind == "within":
        return Within(v["path"], int(v["days"]), v["of"])
    if kind == "and":
        return And(tuple(_condition(c) for c in v))
    if kind == "or":
        return Or(tuple(_condition(c) for c in v))
    if kind == "not":
        return Not(_condition(v))
    return PhraseRef(v)


def _action(data: dict[str, Any]) -> Action:
    if data["kind"] == "fixed":
        return FixedReward(_money(data["amount"]), data["to"])
    cap = data.get("cap")
    return PercentReward(
        Decimal(data["percent"]), data["of"], data["to"], _money(cap) if cap else None
    )


def _rule(data: dict[str, Any]) -> Rule:
    limit = data.get("limit")
    reverse_if = data.get("reverse_if")
    return Rule(
        id=data["id"],
        description=data.get("description"),
        condition=_condition(data["condition"]),
        actions=tuple(_action(a) for a in data["actions"]),
        priority=int(data.get("priority", 0)),
        exclusive=data.get("exclusive", False),
        limit=Limit(_money(limit["amount"]), limit["per"], limit["period"]) if limit else None,
        hold_days=int(data.get("hold_days", 0)),
        reverse_if=_condition(reverse_if) if reverse_if else None,
        source=_source(data),
    )


def _example(data: dict[str, Any]) -> Example:
    return Example(
        name=data["name"],
        given=tuple((g["path"], _value(g["value"])) for g in data["given"]),
        expect=tuple(ExpectedReward(e["to"], _money(e["amount"])) for e in data["expect"]),
        source=_source(data),
    )
