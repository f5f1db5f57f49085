"""Configuration: referral.toml / [tool.referral], REFERRAL_*, precedence, `config show`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from referral import config
from referral.cli import main
from settlement.db import upgrade
from tests.test_settle_cli import held_settle_locks


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project directory with a subdirectory the commands run in, no REFERRAL_* set."""
    for spec in config.SPECS:
        monkeypatch.delenv(spec.env, raising=False)
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    return tmp_path


def missing_db(result) -> str:
    """The database a read command tried: its error names the missing file."""
    assert result.exit_code == 1, result.output
    prefix = "error: SQLite database "
    assert result.stderr.startswith(prefix)
    return result.stderr[len(prefix):].split(" does not exist")[0]


def test_file_found_from_the_working_directory_upward(project) -> None:
    (project / "referral.toml").write_text('db_url = "sqlite:///file.db"\n')
    cfg = config.load()
    assert cfg.file == project / "referral.toml"
    # relative to the file's directory, not to where the command runs
    assert cfg.settings["db_url"] == config.Setting(
        "db_url", f"sqlite:///{project / 'file.db'}", str(project / "referral.toml"))


def test_pyproject_tool_referral_and_the_nearest_file_wins(project) -> None:
    (project / "referral.toml").write_text('locale = "en_US"\n')
    (project / "sub" / "pyproject.toml").write_text('[project]\nname = "x"\n')
    assert config.load().value("locale") == "en_US"  # no [tool.referral]: keep looking up
    (project / "sub" / "pyproject.toml").write_text('[tool.referral]\nlocale = "de_DE"\n')
    assert config.load().value("locale") == "de_DE"
    (project / "sub" / "referral.toml").write_text('locale = "fr_FR"\n')
    assert config.load().value("locale") == "fr_FR"  # referral.toml before pyproject.toml


@pytest.mark.parametrize(("flag", "env", "file", "expected"), [
    (True, True, True, "flag.db"),
    (False, True, True, "env.db"),
    (False, False, True, "file.db"),
    (False, False, False, "referral.db"),
])
def test_precedence_flag_env_file_default(project, flag, env, file, expected) -> None:
    if file:
        (project / "referral.toml").write_text('db_url = "sqlite:///file.db"\n')
    args = ["ledger", "balance", "u1"] + (["--db", "sqlite:///flag.db"] if flag else [])
    envs = {"REFERRAL_DB_URL": "sqlite:///env.db"} if env else {}
    used = missing_db(CliRunner().invoke(main, args, env=envs))
    assert Path(used).name == expected
    assert not Path(used).exists()


def test_config_show_names_each_source(project) -> None:
    (project / "referral.toml").write_text(
        'rules = ["rules/", "more.rule"]\nlock-timeout = 5\nmax_quarantine = "2%"\n'
        'currency = "INR"\n')
    result = CliRunner().invoke(main, ["config", "show", "--json"],
                                env={"REFERRAL_CURRENCY": "USD", "REFERRAL_TIMEZONE": "UTC"})
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    toml = str(project / "referral.toml")
    assert data["file"] == toml
    assert data["settings"] == {
        "db_url": {"value": "sqlite:///referral.db", "source": "default"},
        "rules": {"value": [str(project / "rules/"), str(project / "more.rule")],
                  "source": toml},
        "currency": {"value": "USD", "source": "REFERRAL_CURRENCY"},
        "timezone": {"value": "UTC", "source": "REFERRAL_TIMEZONE"},
        "locale": {"value": "en_IN", "source": "default"},
        "max_quarantine": {"value": "2%", "source": toml},
        "lock_timeout": {"value": 5.0, "source": toml},
    }
    text = CliRunner().invoke(main, ["config", "show"]).stdout.splitlines()
    assert text[0] == f"file: {toml}"
    assert text[1].split() == ["db_url", "sqlite:///referral.db", "(default)"]
    assert text[-1].split() == ["lock_timeout", "5.0", f"({toml})"]


@pytest.mark.parametrize(("text", "message"), [
    ('db = "x"\n', "unknown setting 'db' (known: db_url, rules, currency, timezone, locale,"
                   " max_quarantine, lock_timeout)"),
    ("lock_timeout = -1\n", "lock_timeout: expected a number of seconds, at least 0"),
    ("rules = 3\n", "rules: expected a path or a list of paths"),
    ('db_url = "x\n', "not valid TOML: "),
])
def test_a_bad_file_is_one_line_exit_2(project, text, message) -> None:
    (project / "referral.toml").write_text(text)
    result = CliRunner().invoke(main, ["ledger", "balance", "u1"])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {project / 'referral.toml'}: {message}")
    assert len(result.stderr.splitlines()) == 1


def test_file_settings_reach_settle_and_the_lock_timeout(project, db_url) -> None:
    from tests.test_settlement import FIRST, RULES

    (project / "rules").mkdir()
    (project / "rules" / "program.rule").write_text(RULES, encoding="utf-8")
    (project / "in.jsonl").write_text("\n".join(FIRST) + "\n", encoding="utf-8")
    (project / "referral.toml").write_text(
        f'db_url = "{db_url}"\nrules = "rules"\nmax_quarantine = "2"\nlock_timeout = 0.5\n')
    upgrade(db_url)
    records = str(project / "in.jsonl")
    over = CliRunner().invoke(main, ["settle", "--records", records, "--as-of", "2026-01-10"])
    assert over.exit_code == 4 and "more than --max-quarantine 2 allows" in over.stderr
    flag = CliRunner().invoke(main, ["settle", "--records", records, "--as-of", "2026-01-10",
                                     "--max-quarantine", "3", "--json"])
    assert flag.exit_code == 0, flag.output
    with held_settle_locks(db_url):
        busy = CliRunner().invoke(main, ["ledger", "credit", "u1", "₹5", "--reference", "h:1"])
    assert busy.exit_code == 75
    assert "(waited 0.5 s, --lock-timeout)" in busy.stderr


def test_configured_timezone_decides_today(project, monkeypatch) -> None:
    from dsl import timeutil
    from referral.cli.common import configured_today

    monkeypatch.setenv("REFERRAL_TIMEZONE", "Pacific/Kiritimati")  # UTC+14
    assert configured_today() == timeutil.today(timeutil.zone("Pacific/Kiritimati"))
    monkeypatch.setenv("REFERRAL_TIMEZONE", "Mars/Olympus")
    result = CliRunner().invoke(main, ["ledger", "credit", "u1", "₹5", "--reference", "h:1",
                                       "--db", "sqlite:///nowhere.db"])
    assert result.exit_code == 2
    assert "timezone (configured): unknown time zone 'Mars/Olympus'" in result.stderr
    dated = CliRunner().invoke(main, ["ledger", "credit", "u1", "₹5", "--reference", "h:1",
                                      "--date", "2026-01-10", "--db", "sqlite:///nowhere.db"])
    assert dated.exit_code == 1  # a date given: the zone is not needed
