"""Graphviz diagrams: flow shape, colours, determinism, and the missing-`dot` message."""

from __future__ import annotations

import re

import pytest

from compiler.dot import ACTION, CONDITION, REVERSAL, label, program_to_dot, render_program
from compiler.errors import DOT_MISSING, GraphvizNotFoundError, RenderError
from dsl.errors import ReferralError
from dsl.model import And, Compare, FixedReward, Not, Or, PhraseRef, Program, Rule
from dsl.money import Money
from tests.test_json_model import SEED_RULE

A = Compare("a.x", "=", 1)
B = Compare("b.x", "=", 2)
C = Compare("c.x", "=", 3)
PAY = (FixedReward(Money(100, "INR")),)
SEED = Program(rules=(SEED_RULE,))


def _edges(source: str) -> set[tuple[str, str]]:
    return set(re.findall(r"^\s*(\w+) -> (\w+)", source, re.M))


def _labels(source: str) -> dict[str, str]:
    return dict(re.findall(r'^\s*(\w+) \[label="?(.*?)"? (?:color|fillcolor|shape)', source, re.M))


def _dot(cond, **kw) -> str:
    return program_to_dot(Program(rules=(Rule("r", None, cond, PAY, **kw),)))["r"]


def test_program_to_dot_one_graph_per_rule_left_to_right():
    rules = (Rule("one", None, A, PAY), Rule("two", None, B, PAY))
    dots = program_to_dot(Program(rules=rules))
    assert list(dots) == ["one", "two"]
    assert dots["one"].startswith("digraph one {")
    assert "rankdir=LR" in dots["one"]


def test_program_to_dot_and_is_a_chain():
    source = _dot(And((A, B, C)))
    assert {("rule1", "c1"), ("c1", "c2"), ("c2", "c3"), ("c3", "a1")} <= _edges(source)
    assert _labels(source)["c2"] == "b.x = 2"


def test_program_to_dot_or_branches_join():
    source = _dot(And((Or((A, B)), C)))
    edges = _edges(source)
    assert {("rule1", "or1"), ("or1", "c1"), ("or1", "c2"), ("c1", "join1"), ("c2", "join1"),
            ("join1", "c3")} <= edges
    assert ("c1", "c2") not in edges


def test_program_to_dot_not_is_a_labelled_cluster():
    source = _dot(Not(And((A, B))))
    cluster = source[source.index("subgraph cluster_not1") :]
    assert 'label="NOT: this must be false"' in cluster
    assert "n1 [label=NOT" in cluster
    assert {("rule1", "n1"), ("n1", "c1"), ("c1", "c2"), ("c2", "a1")} <= _edges(source)


def test_program_to_dot_colours():
    source = program_to_dot(SEED)["paid_referrer_bonus"]
    labels = _labels(source)
    for node_id, text in labels.items():
        line = next(ln for ln in source.splitlines() if ln.strip().startswith(node_id + " ["))
        if node_id.startswith("c") and "refunded" not in text:
            assert f'fillcolor="{CONDITION.fill}"' in line, text
        if node_id.startswith("a"):
            assert f'fillcolor="{ACTION.fill}"' in line, text
    reverse_line = next(ln for ln in source.splitlines() if "referee.refunded" in ln)
    assert f'fillcolor="{REVERSAL.fill}"' in reverse_line


def test_program_to_dot_hold_limit_reverse_shown():
    source = program_to_dot(SEED)["paid_referrer_bonus"]
    labels = _labels(source)
    assert labels["limit1"] == "LIMIT ₹5,000 PER referrer PER MONTH"
    assert labels["hold1"] == "HOLD 14 DAYS (pending)"
    assert labels["rev1"] == "REVERSE IF"
    assert labels["rev2"] == "reverse this rule's rewards"
    assert "hold1 -> rev1 [label=later style=dashed]" in source
    assert {("a1", "limit1"), ("a2", "limit1"), ("limit1", "hold1"), ("rev1", "c6"),
            ("c6", "rev2")} <= _edges(source)


def test_program_to_dot_header_and_phrase_labels():
    rule = Rule("r", 'say "hi"', PhraseRef("referrer is a paid user"), PAY, priority=3,
                exclusive=True)
    source = program_to_dot(Program(rules=(rule,)))["r"]
    assert 'rule1 [label="RULE r\\nsay \\"hi\\"\\nPRIORITY 3, EXCLUSIVE"' in source
    assert 'c1 [label="referrer is a paid user"' in source


def test_program_to_dot_deterministic():
    assert program_to_dot(SEED) == program_to_dot(SEED)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a.b = 1", "a.b = 1"),
        ('a.b = "x\\y"', 'a.b = \\"x\\\\y\\"'),
        ("referee.subscribed_at WITHIN 30 DAYS OF referral.created_at",
         "referee.subscribed_at WITHIN 30 DAYS\\nOF referral.created_at"),
    ],
)
def test_label_wraps_and_escapes(text, expected):
    assert label(text) == expected


def test_render_program_dot_files(tmp_path):
    written = render_program(SEED, "dot", tmp_path / "out")
    assert written == [tmp_path / "out" / "paid_referrer_bonus.dot"]
    assert written[0].read_text(encoding="utf-8") == program_to_dot(SEED)["paid_referrer_bonus"]


def test_render_program_svg_has_nodes_and_colours(tmp_path):
    (path,) = render_program(SEED, "svg", tmp_path)
    svg = path.read_text(encoding="utf-8")
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    assert "referrer.plan = &quot;paid&quot;" in svg
    assert "ISSUE ₹500 REWARD TO referrer" in svg
    assert f'fill="{CONDITION.fill}"' in svg and f'stroke="{CONDITION.line}"' in svg
    assert f'fill="{ACTION.fill}"' in svg and f'stroke="{ACTION.line}"' in svg


def test_render_program_png(tmp_path):
    (path,) = render_program(SEED, "png", tmp_path)
    assert path.name == "paid_referrer_bonus.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("fmt", ["svg", "png"])
def test_render_program_without_dot_binary(tmp_path, monkeypatch, fmt):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(GraphvizNotFoundError) as info:
        render_program(SEED, fmt, tmp_path / "out")
    assert str(info.value) == (
        "Graphviz's `dot` program was not found; install it "
        "(Debian/Ubuntu: apt-get install graphviz) or use --format dot"
    )
    assert str(info.value) == DOT_MISSING
    assert isinstance(info.value, ReferralError)
    assert not (tmp_path / "out").exists()


def test_render_program_dot_needs_no_binary(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert render_program(SEED, "dot", tmp_path)[0].suffix == ".dot"


def test_render_program_unknown_format(tmp_path):
    with pytest.raises(RenderError, match="unknown diagram format 'pdf'"):
        render_program(SEED, "pdf", tmp_path)
