"""The CLI's settings: a file, the environment, defaults; flags win over all three.

A ``referral.toml`` (top-level keys) or a ``pyproject.toml`` with a
``[tool.referral]`` table, the nearest one from the working directory upward,
and ``REFERRAL_*`` environment variables give the database URL, the rules, the
currency, the time zone, the locale, the quarantine threshold and the lock
timeout.  Precedence: a flag > the environment > the file > the default.  The
CLI hands the file's values to click as each command's ``default_map`` (click
itself ranks a flag, then the option's ``envvar``, then the map, then the
default), so the file changes only what an option would otherwise default to;
``referral config show`` prints every value and where it came from.

Relative paths in a file (``rules``, a SQLite database) are relative to that
file's directory, so a command run from a subdirectory means the same files.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dsl.errors import ReferralError

FILE_NAME = "referral.toml"
PYPROJECT = "pyproject.toml"
ENV_PREFIX = "REFERRAL_"


class ConfigError(ReferralError):
    """A configuration file or value that cannot be used (``file: error: ...``)."""


def _text(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError("expected a string")
    return str(value)


def _number(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("expected a number of seconds")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError("expected a number of seconds") from None
    if number < 0:
        raise ValueError("expected a number of seconds, at least 0")
    return number


def _paths(value: Any) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(v, str) for v in items):
        raise ValueError("expected a path or a list of paths")
    return tuple(items)


@dataclass(frozen=True)
class Spec:
    """One setting: its key, environment variable, default and how a value is read."""

    key: str
    default: Any
    parse: Callable[[Any], Any]
    help: str

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.key.upper()


SPECS: tuple[Spec, ...] = (
    Spec("db_url", "sqlite:///referral.db", _text, "database URL (--db)"),
    Spec("rules", None, _paths, "rule files or directories (settle --rules)"),
    Spec("currency", None, _text, "the program's currency (--currency)"),
    Spec("timezone", None, _text, "the zone of 'today' for --date/--as-of defaults"),
    Spec("locale", "en_IN", _text, "locale of amounts shown to people (--locale)"),
    Spec("max_quarantine", None, _text, "settle --max-quarantine (N or P%)"),
    Spec("lock_timeout", 30.0, _number, "seconds a writer waits for a lock (--lock-timeout)"),
)
BY_KEY = {s.key: s for s in SPECS}


@dataclass(frozen=True)
class Setting:
    """A setting's value and its source: ``default``, an environment variable, a file."""

    key: str
    value: Any
    source: str


@dataclass(frozen=True)
class Config:
    """The settings in force (before flags) and the file they were read from, if any."""

    settings: dict[str, Setting]
    file: Path | None = None
    file_values: dict[str, Any] = field(default_factory=dict)

    def value(self, key: str) -> Any:
        return self.settings[key].value

    def __iter__(self) -> Any:
        return iter(self.settings.values())


def find_file(start: Path) -> tuple[Path, dict[str, Any]] | None:
    """The nearest ``referral.toml``, or ``pyproject.toml`` with ``[tool.referral]``, from
    ``start`` upward, with its table of settings."""
    for directory in (start, *start.parents):
        own = directory / FILE_NAME
        if own.is_file():
            return own, _read(own)
        project = directory / PYPROJECT
        if project.is_file():
            table = _read(project).get("tool", {}).get("referral")
            if table is not None:
                if not isinstance(table, dict):
                    raise ConfigError(f"{project}: [tool.referral] must be a table")
                return project, table
    return None


def _read(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None


def _anchored(key: str, value: Any, base: Path) -> Any:
    """A file's relative paths, relative to its directory."""
    if key == "rules":
        return tuple(str(base / p) for p in value)
    if key == "db_url" and value.startswith("sqlite:///") and not value.startswith("sqlite:////"):
        name = value[len("sqlite:///"):]
        if name and name != ":memory:" and not name.startswith("file:"):
            return "sqlite:///" + str(base / name)
    return value


def load(cwd: Path | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """The settings for a command run in ``cwd`` with ``environ`` (default: this process's)."""
    environ = os.environ if environ is None else environ
    found = find_file((cwd or Path.cwd()).resolve())
    file, table = found if found is not None else (None, {})
    values: dict[str, Any] = {}
    for raw_key, raw in table.items():
        key = raw_key.replace("-", "_")
        spec = BY_KEY.get(key)
        if spec is None:
            known = ", ".join(BY_KEY)
            raise ConfigError(f"{file}: unknown setting {raw_key!r} (known: {known})")
        try:
            values[key] = _anchored(key, spec.parse(raw), file.parent if file else Path())
        except ValueError as e:
            raise ConfigError(f"{file}: {raw_key}: {e}") from None
    settings: dict[str, Setting] = {}
    for spec in SPECS:
        if environ.get(spec.env):
            text = environ[spec.env]
            try:
                value = spec.parse(text.split(os.pathsep) if spec.key == "rules" else text)
            except ValueError as e:
                raise ConfigError(f"{spec.env}: {e}") from None
            settings[spec.key] = Setting(spec.key, value, spec.env)
        elif spec.key in values:
            settings[spec.key] = Setting(spec.key, values[spec.key], str(file))
        else:
            settings[spec.key] = Setting(spec.key, spec.default, "default")
    return Config(settings, file, values)
