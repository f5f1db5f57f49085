"""Tamper evidence: the attacks of issue 18 item 6 (and the ones verify always caught), each
on a real ledger (two settle runs, a payout batch, hand credits) on both databases.

Every attack must be found by `ledger verify`, with the anchor written before it when the
attack rewrites or empties everything (the database alone then looks consistent, and the
test says so).  An attack marked with a *sole* detector is caught by that detector only:
switching the detector off alone lets the attack through, so the test shows the detector
is what catches it (with the daily aggregate's checks, which see every change to the rows
the liabilities report sums, switched off too).
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from referral.cli import main
from tests.tampering import (
    ATTACKS,
    DETECTORS,
    KEY,
    Attack,
    Ledger,
    build_ledger,
    carry_out,
    empty_everything,
    says,
    verify,
)


@pytest.fixture
def book(db_url, tmp_path, monkeypatch) -> Ledger:
    monkeypatch.setenv("REFERRAL_ANCHOR_KEY", KEY)
    return build_ledger(db_url, tmp_path)


@pytest.mark.parametrize("attack", ATTACKS, ids=[a.name for a in ATTACKS])
def test_attack_is_detected(book: Ledger, attack: Attack, monkeypatch) -> None:
    assert verify(book, anchored=True) == []
    carry_out(book, attack)
    alone = verify(book, anchored=False)
    if attack.needs_anchor:
        assert alone == [], "caught without the anchor: needs_anchor is wrong"
    problems = verify(book, anchored=True)
    assert problems, f"{attack.name}: not detected"
    for detector in attack.caught_by:
        assert any(says(detector, p) for p in problems), (detector, problems)
    if attack.sole is not None:
        assert any(says(attack.sole, p) for p in problems), problems
        for module, name, off in DETECTORS[attack.sole] + DETECTORS["daily"]:
            monkeypatch.setattr(module, name, off)
        assert verify(book, anchored=attack.needs_anchor) == [], (
            f"{attack.name}: still caught with {attack.sole} off, so not by it alone")


def test_every_detector_is_the_sole_catcher_of_some_attack() -> None:
    """Each detector has an attack only it catches (the anchor's counts back its heads up:
    switched off together, every table emptied goes through; see the next test)."""
    assert {a.sole for a in ATTACKS if a.sole} == set(DETECTORS) - {"anchor-counts"}


def test_emptied_tables_caught_by_counts_when_heads_are_off(book: Ledger, monkeypatch) -> None:
    carry_out(book, Attack("every table emptied", empty_everything, ()))
    for module, name, off in DETECTORS["anchor-heads"]:
        monkeypatch.setattr(module, name, off)
    problems = verify(book, anchored=True)
    assert problems and all(says("anchor-counts", p) for p in problems), problems
    for module, name, off in DETECTORS["anchor-counts"]:
        monkeypatch.setattr(module, name, off)
    assert verify(book, anchored=True) == []


def test_verify_cli_with_anchor_names_what_the_database_hides(book: Ledger) -> None:
    carry_out(book, Attack("every table emptied", empty_everything, ()))
    runner = CliRunner()
    alone = runner.invoke(main, ["ledger", "verify", "--db", book.url])
    assert (alone.exit_code, alone.stdout) == (
        0, "ok: 0 entries checked, hash chain intact, every currency sums to zero\n")
    result = runner.invoke(main, ["ledger", "verify", "--anchor", str(book.anchor),
                                  "--db", book.url])
    assert result.exit_code == 1
    assert result.stderr.startswith(
        "error: ledger verification failed: entry id="), result.stderr
    assert "recorded it as the head (rows were deleted or the tables emptied)" in result.stderr


def test_verify_refuses_a_bad_or_missing_signature(book: Ledger, monkeypatch) -> None:
    runner = CliRunner()
    text = book.anchor.read_text()
    forged = book.anchor.with_name("forged.json")
    forged.write_text(text.replace('"ledger_entries": ', '"ledger_entries": 1'))
    result = runner.invoke(main, ["ledger", "verify", "--anchor", str(forged), "--db", book.url])
    assert (result.exit_code, result.stderr) == (
        1, f"error: {forged}: bad signature (the file was changed, or signed with another"
           " key)\n")
    monkeypatch.delenv("REFERRAL_ANCHOR_KEY")
    result = runner.invoke(main, ["ledger", "verify", "--anchor", str(book.anchor),
                                  "--db", book.url])
    assert (result.exit_code, result.stderr) == (
        1, f"error: {book.anchor}: the anchor is signed; set REFERRAL_ANCHOR_KEY to check it\n")
    monkeypatch.setenv("REFERRAL_ANCHOR_KEY", "another key")
    result = runner.invoke(main, ["ledger", "verify", "--anchor", str(book.anchor),
                                  "--db", book.url])
    assert result.exit_code == 1 and "bad signature" in result.stderr


def test_what_came_after_the_anchor_is_not_a_problem(book: Ledger) -> None:
    runner = CliRunner()
    for args in (["ledger", "credit", "u7", "₹9", "--reference", "hand:after"],
                 ["ledger", "confirm", "hand:after"]):
        assert runner.invoke(main, [*args, "--db", book.url]).exit_code == 0
    result = runner.invoke(main, ["ledger", "verify", "--anchor", str(book.anchor),
                                  "--db", book.url])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("ok: ")
    assert f"; nothing before anchor {book.anchor} (" in result.stdout
