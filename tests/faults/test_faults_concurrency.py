"""Simultaneous `referral settle` runs over overlapping inputs of the example program, its
LIMITs kept, while finance clerks post and reverse hand credits: every reward at most once
and exactly what order cannot change, no LIMIT exceeded, every hand write once."""

from __future__ import annotations

import json
import subprocess
import sys
import zlib
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from dsl.evaluate import compile_program
from dsl.program import load_program
from settlement import ledger
from settlement.db import open_engine, upgrade
from settlement.demo import write_records
from settlement.limits import period_window
from settlement.tables import ledger_entries
from tests.faults.helpers import RULES_DIR, cli, settle_args, spawn, tight_limits, verify_ok

pytestmark = [pytest.mark.faults, pytest.mark.slow]

AS_OF = "2026-11-25"
CLERKS, HAND_WRITES = 2, 12


def referral_group(line: str, groups: int) -> int:
    """Which of ``groups`` groups of referrals a line belongs to (a referral's lines together)."""
    try:
        key = str(json.loads(line)["referral_id"])
    except (ValueError, KeyError, TypeError):
        key = line
    return zlib.crc32(key.encode()) % groups


def overlapping_inputs(tmp_path: Path, count: int, files: int) -> tuple[Path, list[Path]]:
    """The union, and ``files`` inputs where input i holds groups i and i+1 of ``files``
    groups (in file order): each referral, its refund update included, is in two inputs."""
    union = tmp_path / "union.jsonl"
    with union.open("w") as fh:
        write_records(fh, count, seed=23)
    lines = union.read_text().splitlines(keepends=True)
    paths = []
    for i in range(files):
        wanted = {i, (i + 1) % files}
        path = tmp_path / f"input{i}.jsonl"
        path.write_text("".join(x for x in lines if referral_group(x, files) in wanted))
        paths.append(path)
    assert sum(len(p.read_text().splitlines()) for p in paths) == 2 * len(lines)
    return union, paths


def entry_set(url: str) -> tuple[set[tuple], int]:
    """Entries as comparable tuples (no ids: they follow run order), and the most copies
    any reference has."""
    e = ledger_entries
    engine = open_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(e.c.reference_id, e.c.user_id, e.c.amount, e.c.currency, e.c.entry_type,
                      e.c.reversal_id, e.c.rule_id, e.c.referral_id, e.c.role, e.c.event_date,
                      e.c.hold_until)
        ).all()
        most = conn.execute(
            sa.select(sa.func.count()).select_from(e).group_by(e.c.reference_id)
            .order_by(sa.func.count().desc()).limit(1)
        ).scalar() or 0
    engine.dispose()
    return {tuple(r) for r in rows}, most


def standing(url: str) -> tuple[dict[tuple[str, str, str], tuple[str, int]], list[Any]]:
    """(rule, referral, role) -> (user, amount) of the reward credits not reversed; and
    every entry."""
    engine = open_engine(url)
    with engine.connect() as conn:
        entries = list(ledger.iter_entries(conn))
    engine.dispose()
    out: dict[tuple[str, str, str], tuple[str, int]] = {}
    for e in entries:
        if e.entry_type != "credit" or e.rule_id is None or e.status == "reversed":
            continue
        key = (e.rule_id, str(e.referral_id), str(e.role))
        user, amount = out.get(key, (e.user_id, 0))
        assert user == e.user_id, f"{key} stands for two people"
        out[key] = (user, amount + e.amount)
    return out, entries


def candidates(program: Any, union: Path) -> dict[tuple[str, str, str], int]:
    """What each key could be owed at most: its rule's reward on the referral's newest
    snapshot (the last line of it), before EXCLUSIVE and LIMIT; 0 once REVERSE IF held."""
    newest: dict[str, dict[str, Any]] = {}
    for line in union.read_text().splitlines():
        try:
            data = json.loads(line)
            newest[str(data["referral_id"])] = data
        except (ValueError, KeyError, TypeError):
            continue
    compiled = compile_program(program, default_currency=program.default_currency())
    out: dict[tuple[str, str, str], int] = defaultdict(int)
    for rid, data in newest.items():
        try:
            evaluation = compiled.evaluate_closures(data)
        except Exception:  # noqa: BLE001 - a record settlement quarantines pays nothing
            continue
        for o in evaluation.outcomes:
            if o.matched and not o.reverse:
                for r in [*o.rewards, *o.suppressed]:
                    out[(o.rule_id, rid, r.role)] += r.amount.amount
    return out


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_simultaneous_settles_with_a_limit_and_hand_writes_racing(
    backend, request, scale, figure, tmp_path: Path
) -> None:
    if backend == "postgresql":
        url = request.getfixturevalue("pg_url")
        reference = request.getfixturevalue("second_pg_url")
    else:
        url = f"sqlite:///{tmp_path / 'concurrent.db'}"
        reference = f"sqlite:///{tmp_path / 'reference.db'}"
    rules = tight_limits(RULES_DIR, tmp_path / "rules")
    program = load_program([rules]).program
    assert all(r.limit is not None for r in program.rules if r.id.endswith("_tier"))
    union, inputs = overlapping_inputs(tmp_path, scale.concurrent_records, scale.settles)
    for u in (url, reference):
        upgrade(u)
    single = cli(*settle_args(rules, union, reference, AS_OF, "--json"))
    assert single.exit_code == 0, single.output
    expected, _ = standing(reference)
    busiest = Counter(user for user, _ in expected.values())
    clerks = [user for user, _ in busiest.most_common(4)]

    settles = [spawn(settle_args(rules, path, url, AS_OF, "--json")) for path in inputs]
    writers = [subprocess.Popen(
        [sys.executable, "-m", "tests.faults.hand_writer", url, f"clerk{i}",
         str(HAND_WRITES), *clerks], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(CLERKS)]
    results = [p.communicate(timeout=900) for p in settles]
    wrote = [p.communicate(timeout=900) for p in writers]
    assert [p.returncode for p in settles] == [0] * len(settles), [e for _, e in results]
    assert [p.returncode for p in writers] == [0] * len(writers), [e for _, e in wrote]
    summaries = [json.loads(out) for out, _ in results]

    got, entries = standing(url)
    _, most = entry_set(url)
    assert most == 1  # no reference twice
    # What order cannot change is exactly the single run's: every referee reward (the
    # LIMITs count referrers, the EXCLUSIVE tiers pay referrers).
    assert {k: v for k, v in got.items() if k[2] == "referee"} == {
        k: v for k, v in expected.items() if k[2] == "referee"}
    owed = candidates(program, union)
    over = {k: (v, owed.get(k, 0)) for k, v in got.items() if v[1] > owed.get(k, 0)}
    assert not over, f"rewards above what the rule pays: {sorted(over.items())[:5]}"
    rules = {r.id: r for r in program.rules}
    held: Counter[tuple[str, str, Any]] = Counter()
    for e in entries:
        rule = rules.get(e.rule_id or "")
        if e.entry_type != "credit" or e.status == "reversed" or rule is None or (
                rule.limit is None or rule.limit.per not in ("person", e.role)):
            continue
        held[(rule.id, e.user_id, period_window(rule.limit.period, e.event_date)[0])] += e.amount
    exceeded = {k: v for k, v in held.items() if v > rules[k[0]].limit.amount.amount}
    assert not exceeded, f"LIMIT exceeded: {sorted(exceeded.items())[:5]}"
    by_ref = {e.reference_id: e for e in entries}
    hand = 0
    for out, _ in wrote:
        for line in map(json.loads, out.splitlines()):
            if "reserved_exit" in line:
                assert line["reserved_exit"] != 0 and "reserved" in line["reserved_output"], line
            elif "reversed" in line:
                assert by_ref[line["reversed"]].status == "reversed", line
                assert by_ref["reversal:" + line["reversed"]].amount < 0
            else:
                e = by_ref[line["reference_id"]]
                assert (e.user_id, e.amount, e.rule_id) == (line["user_id"], line["amount"], None)
                hand += 1
    assert hand == CLERKS * HAND_WRITES
    settled = [e.id for e in entries if e.rule_id is not None]
    between = sum(1 for e in entries
                  if e.reference_id.startswith("hand:") and min(settled) < e.id < max(settled))
    # Each run counted only what it created: together they created each reward credit once.
    assert sum(s["posted"] for s in summaries) == sum(
        1 for e in entries if e.entry_type == "credit" and e.rule_id is not None)
    assert sum(s["already_posted"] for s in summaries) > 0  # the inputs did overlap
    capped = sum(s["capped"] for s in summaries)
    assert capped > 0, "no LIMIT bound: the test would not see one exceeded"
    verify_ok(url)
    figure(
        f"concurrency ({backend}): {len(settles)} simultaneous settles of overlapping inputs "
        f"({scale.concurrent_records:,} records, each referral in 2 inputs, LIMITs kept: "
        f"{capped:,} rewards capped, {len(held):,} LIMIT periods, none exceeded) and "
        f"{CLERKS} clerks' {hand} hand credits ({hand // 3} reversed; {between} landed "
        "between the runs' writes) racing them: "
        f"{len(got):,} rewards standing, each once, none above its rule; referee rewards "
        f"identical to one uninterrupted run; every hand write once; the reserved reference "
        "refused; verify ok"
    )
