"""A command imports what it needs: the money commands start without the rule parser, the
compiler or alembic (a third of a payout run's start-up), and still check the schema."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

import pytest

from referral.cli import COMMANDS, main
from referral.cli.common import commands_of

HEAVY = ("lark", "dsl.parser", "dsl.program", "compiler", "alembic", "jinja2", "graphviz")


def _imported(argv: list[str]) -> set[str]:
    code = (
        "import sys, json\n"
        "from referral.cli import main\n"
        "try:\n"
        f"    main({argv!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(json.dumps(sorted(sys.modules)), file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    return set(json.loads(done.stderr.strip().splitlines()[-1]))


def _heavy(modules: set[str]) -> set[str]:
    return {m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY)}


@pytest.mark.parametrize("argv", [["payout", "create", "--help"],
                                  ["ledger", "balance", "--help"],
                                  ["payees", "show", "--help"]])
def test_money_commands_do_not_import_the_rule_toolchain(argv) -> None:
    assert _heavy(_imported(argv)) == set()


def test_rules_commands_still_load_theirs() -> None:
    assert {"dsl.parser", "compiler.dot"} <= _imported(["rules", "check", "--help"])


def test_a_database_command_checks_the_schema_without_alembic(tmp_path) -> None:
    sqlite3.connect(tmp_path / "empty.db").close()
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    code = (
        "import sys\n"
        "from referral.cli import main\n"
        "try:\n"
        f"    main(['ledger', 'balance', 'u1', '--db', {url!r}])\n"
        "except SystemExit as e:\n"
        "    print(e.code, 'alembic' in sys.modules, file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    lines = done.stderr.strip().splitlines()
    assert "database schema is missing; run `referral db upgrade`" in lines[0]
    assert lines[-1] == "1 False"


def test_every_lazy_command_loads_under_its_name() -> None:
    loaded = commands_of(main)
    assert set(loaded) == set(COMMANDS)
    assert {name: command.name for name, command in loaded.items()} == {
        name: name for name in COMMANDS}
    assert "draft" in commands_of(loaded["rules"])


def test_the_console_script_tunes_the_collector_before_the_command() -> None:
    """``referral`` and ``python -m referral`` run ``run``: what was imported is frozen out
    of collections and collections come less often (bench/RESULTS.md: a tenth of a payout
    run); ``main``, which tests invoke in-process, leaves the collector alone."""
    import tomllib
    from pathlib import Path

    scripts = tomllib.loads(Path("pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["referral"] == "referral.cli:run"
    code = (
        "import gc, referral.cli as cli\n"
        "cli.main = lambda: print(list(gc.get_threshold()), gc.get_freeze_count() > 0)\n"
        "print(list(gc.get_threshold()))\n"
        "cli.run()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    before, after = done.stdout.splitlines()
    assert before == "[700, 10, 10]"
    assert after == "[100000, 50, 100] True"
    assert "from referral.cli import run" in Path("referral/__main__.py").read_text()
