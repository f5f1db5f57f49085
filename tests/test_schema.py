"""The published JSON Schema: shipped, documented, and strict with useful paths."""

from __future__ import annotations

import copy
import re
from datetime import date

import pytest

from dsl.codec import program_from_json, program_to_json
from dsl.errors import ModelSchemaError, ReferralError
from dsl.model import COMPARE_OPS, Compare, FixedReward, PercentReward, Program, Rule
from dsl.money import CURRENCY_EXPONENTS, Money
from dsl.schema import model_schema, schema_errors, validate_model_json

VALID = program_to_json(Program(rules=(
    Rule("r", "d", Compare("referrer.plan", "=", "paid"),
         (FixedReward(Money(50000, "INR")),
          PercentReward(__import__("decimal").Decimal("10"), "referee.first_payment", "referee"))),
)))


def _broken(path: tuple, value) -> dict:
    data = copy.deepcopy(VALID)
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return data


def test_model_schema_is_draft_2020_12_with_descriptions():
    schema = model_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["description"]
    for name in ("rule", "condition", "value", "money", "action", "limit", "example"):
        assert schema["$defs"][name]["description"], name


def test_model_schema_enums_match_model():
    defs = model_schema()["$defs"]
    # Every ISO 4217 code (Babel's list) has the schema's form; the reader refuses the
    # well-formed codes that are not currencies (tests/test_types.py).
    pattern = re.compile(defs["currency"]["pattern"])
    assert all(pattern.fullmatch(code) for code in CURRENCY_EXPONENTS)
    assert len(CURRENCY_EXPONENTS) > 150
    assert tuple(defs["condition"]["properties"]["compare"]["properties"]["op"]["enum"]) == (
        COMPARE_OPS
    )


def test_validate_model_json_accepts_compiled_output():
    validate_model_json(VALID)


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (("rules", 0, "actions", 0, "amount", "currency"), "XX",
         "rules.json: $.rules[0].actions[0].amount.currency: 'XX' does not match '^[A-Z]{3}$'"),
        (("rules", 0, "actions", 0, "amount", "amount"), 1.5,
         "rules.json: $.rules[0].actions[0].amount.amount: 1.5 is not of type 'integer'"),
        (("rules", 0, "actions", 0, "kind"), "bonus",
         "rules.json: $.rules[0].actions[0].kind: 'bonus' is not one of ['fixed', 'percent']"),
        (("rules", 0, "actions", 1, "percent"), "ten",
         "rules.json: $.rules[0].actions[1].percent: 'ten' does not match "),
        (("rules", 0, "condition", "compare", "op"), "~",
         "rules.json: $.rules[0].condition.compare.op: '~' is not one of "),
        (("rules", 0, "condition", "compare", "value"), {"date": "2026-02-30"},
         "rules.json: $.rules[0].condition.compare.value.date: '2026-02-30' is not a 'date'"),
        (("rules", 0, "condition", "compare", "value"), {"float": 1},
         "rules.json: $.rules[0].condition.compare.value: Additional properties are not allowed"),
        (("rules", 0, "id"), 7, "rules.json: $.rules[0].id: 7 is not of type 'string'"),
        (("rules", 0, "hold_days"), -1,
         "rules.json: $.rules[0].hold_days: -1 is less than the minimum of 0"),
    ],
)
def test_validate_model_json_reports_json_path(path, value, expected):
    with pytest.raises(ModelSchemaError) as info:
        validate_model_json(_broken(path, value), "rules.json")
    assert str(info.value).startswith(expected)


def test_validate_model_json_lists_every_error():
    data = _broken(("rules", 0, "actions", 0, "amount", "currency"), "XX")
    data["rules"][0]["priority"] = "high"
    data["examples"] = "none"
    with pytest.raises(ModelSchemaError) as info:
        validate_model_json(data, "m.json")
    lines = str(info.value).splitlines()
    assert [line.split(": ")[1] for line in lines] == [
        "$.examples",
        "$.rules[0].actions[0].amount.currency",
        "$.rules[0].priority",
    ]
    assert all(line.startswith("m.json: ") for line in lines)


def test_validate_model_json_missing_keys():
    assert schema_errors({"schema_version": 1}) == [
        "$: 'definitions' is a required property",
        "$: 'rules' is a required property",
        "$: 'examples' is a required property",
    ]


def test_validate_model_json_not_an_object():
    with pytest.raises(ModelSchemaError, match=r"^x.json: \$: \[\] is not of type 'object'$"):
        validate_model_json([], "x.json")


@pytest.mark.parametrize("version", [0, 2, "1"])
def test_program_from_json_other_schema_version_refused(version):
    with pytest.raises(ModelSchemaError) as info:
        program_from_json({**VALID, "schema_version": version}, "m.json")
    assert str(info.value) == (
        f"m.json: $.schema_version: unsupported schema_version {version!r} "
        "(this version reads schema_version 1)"
    )
    assert isinstance(info.value, ReferralError)


def test_program_from_json_defaults_optional_rule_keys():
    data = copy.deepcopy(VALID)
    rule = data["rules"][0]
    for key in ("description", "priority", "exclusive", "limit", "hold_days", "reverse_if"):
        del rule[key]
    program = program_from_json(data)
    assert program.rules[0] == Rule(
        "r", None, Compare("referrer.plan", "=", "paid"), program.rules[0].actions
    )


def test_program_from_json_builds_dates():
    data = _broken(("rules", 0, "condition", "compare", "value"), {"date": "2026-01-31"})
    assert program_from_json(data).rules[0].condition.value == date(2026, 1, 31)
