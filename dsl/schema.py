"""The published JSON Schema of the rule model, and validation against it.

The schema (``dsl/rule-model.schema.json``, shipped with the package) is the
contract for other tools; every violation is reported with its JSON path, all
at once, so a hand-edited or generated model can be fixed in one pass.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator

from dsl.errors import ModelSchemaError
from dsl.model import SCHEMA_VERSION

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
