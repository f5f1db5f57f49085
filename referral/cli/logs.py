"""Log lines on stderr for commands that run unattended (``settle``): text or JSON lines.

The library logs through ``logging`` (``settlement.run``: phases, progress, the
summary), each record carrying ``run_id``, ``phase``, ``event`` and ``counts`` in
its ``extra``; here they become one line each.  ``--log-format json`` makes every
stderr line of the command a JSON object, rule warnings and the final error
included, so that a cron wrapper or a log shipper can parse all of it.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import click

LOG_FORMATS = ("text", "json")
LEVELS = {-1: logging.WARNING, 0: logging.INFO, 1: logging.DEBUG}
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message",
                                                                           "asctime"}


def _ts(created: float) -> str:
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def json_line(level: str, message: str, **fields: Any) -> str:
    """One JSON log object (the shape every line of ``--log-format json`` has)."""
    out: dict[str, Any] = {"ts": _ts(datetime.now(UTC).timestamp()), "level": level, "run_id": None,
           "phase": None, "event": None, "message": message, "counts": {}}
    out.update(fields)
    return json.dumps(out, default=str, ensure_ascii=False)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extra = {k: v for k, v in record.__dict__.items() if k not in _STANDARD}
        out = {"ts": _ts(record.created), "level": record.levelname.lower(),
               "run_id": None, "phase": None, "event": None,
               "message": record.getMessage(), "counts": {}, **extra}
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``2026-12-01T02:00:00.123Z INFO run 1a2b3c4d reading: 10000 records read, ...``"""

    def format(self, record: logging.LogRecord) -> str:
        run = getattr(record, "run_id", None)
        phase = getattr(record, "phase", None)
        where = (f" run {run[:8]}" if run else "") + (f" {phase}:" if phase else "")
        return f"{_ts(record.created)} {record.levelname:<7}{where} {record.getMessage()}"


class _StderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is when a record is emitted (CliRunner swaps it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:
            self.handleError(record)


@contextmanager
def command_logging(fmt: str, verbosity: int,
                    loggers: tuple[str, ...] = ("settlement",)) -> Iterator[Callable[[str], None]]:
    """Log ``loggers`` to stderr in ``fmt`` at the level of ``verbosity`` (-1 quiet,
    0 default, 1 verbose) for the block; yields how to print a diagnostic line (a rule
    warning) in the same format."""
    handler = _StderrHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    saved = []
    for name in loggers:
        logger = logging.getLogger(name)
        saved.append((logger, logger.level))
        logger.setLevel(LEVELS[max(-1, min(1, verbosity))])
        logger.addHandler(handler)

    def diagnostic(line: str) -> None:
        if fmt == "json":
            level = "error" if ": error:" in line else "warning"
            click.echo(json_line(level, line, event="diagnostic"), err=True)
        else:
            click.echo(line, err=True)

    try:
        yield diagnostic
    finally:
        for logger, level in saved:
            logger.removeHandler(handler)
            logger.setLevel(level)


def json_error_printer(**fields: Any) -> Callable[[str], None]:
    """The final ``error: ...`` line as a JSON object (see ``common.ERROR_PRINTER``)."""
    def printer(message: str) -> None:
        click.echo(json_line("error", message, event="error", **fields), err=True)
    return printer
