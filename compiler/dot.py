"""Rule model -> Graphviz diagrams: one left-to-right flow per rule.

Conditions are red boxes, rewards green.  AND is a chain (every box must be
passed), OR fans out into parallel branches that join again, NOT wraps what it
negates in a dashed box labelled NOT.  LIMIT and HOLD follow the rewards, and
REVERSE IF is an orange branch on a dashed edge, since it acts later.  Labels
are the canonical rule text (``compiler.text``), so a diagram reads like the
rule.  Node ids are counters, so the same rule always gives the same DOT.
"""

from __future__ import annotations

import shutil
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import graphviz

from compiler.errors import FormatError, GraphvizNotFoundError, RenderError
from compiler.text import (
    describe_condition,
    format_action,
    format_condition,
    format_node,
    hold_text,
    phrase_of,
    phrase_runs,
)
from dsl.model import And, Condition, Not, Or, Program, Rule

Format = Literal["dot", "svg", "png"]
RankDir = Literal["LR", "TB"]  # left to right (the default), or top down
FORMATS: tuple[Format, ...] = ("dot", "svg", "png")

LABEL_WIDTH = 36
FONT = "Helvetica"


@dataclass(frozen=True)
class Theme:
    fill: str
    line: str
    edge_style: str = "solid"


CONDITION = Theme(fill="#f4cccc", line="#cc0000")
ACTION = Theme(fill="#d9ead3", line="#38761d")
REVERSAL = Theme(fill="#fce5cd", line="#e69138", edge_style="dashed")
HEADER = Theme(fill="#eeeeee", line="#666666")
HOLD = Theme(fill="#fff2cc", line="#bf9000")


def label(text: str) -> str:
    """A DOT escString: long text wrapped, backslashes and quotes literal."""
    lines = textwrap.wrap(text, LABEL_WIDTH, break_long_words=False, break_on_hyphens=False)
    escaped = (line.replace("\\", "\\\\").replace('"', '\\"') for line in lines or [""])
    return "\\n".join(escaped)


class DotGenerator:
    """Builds one rule's digraph; one method per condition node type (``<node>_dot``)."""

    def __init__(self, rule: Rule, rankdir: RankDir = "LR") -> None:
        self.rule = rule
        self.graph = graphviz.Digraph(name=rule.id)
        self.graph.attr("graph", rankdir=rankdir, fontname=FONT, nodesep="0.3", ranksep="0.4")
        self.graph.attr("node", fontname=FONT, fontsize="11", shape="box", style="rounded,filled")
        self.graph.attr("edge", fontname=FONT, fontsize="9", color="#555555")
        self._counters: dict[str, int] = {}

    def _id(self, prefix: str) -> str:
        self._counters[prefix] = self._counters.get(prefix, 0) + 1
        return f"{prefix}{self._counters[prefix]}"

    def _node(self, g: graphviz.Digraph, prefix: str, text: str, theme: Theme, **attrs: str) -> str:
        node_id = self._id(prefix)
        g.node(node_id, label(text), fillcolor=theme.fill, color=theme.line, **attrs)
        return node_id

    def _edge(self, g: graphviz.Digraph, src: str, dst: str, theme: Theme,
              text: str = "") -> None:
        # Written into the (sub)graph being built, so that an edge never names a
        # cluster's node before the cluster declares it.
        attrs = {"style": theme.edge_style} if theme.edge_style != "solid" else {}
        if text:
            attrs["label"] = text
        g.edge(src, dst, **attrs)

    # -- conditions: each returns the node the flow leaves from when it holds --------

    def condition_dot(self, g: graphviz.Digraph, cond: Condition, src: str, theme: Theme,
                      edge_label: str = "") -> str:
        method = getattr(self, f"{type(cond).__name__.lower()}_dot", None)
        if method is None:
            return self.leaf_dot(g, cond, src, theme, edge_label)
        phrase = phrase_of(cond)
        if phrase is not None:  # a phrase that means several conditions: a box around them
            with self._phrase_box(g, phrase, format_condition(cond), theme) as box:
                return method(box, cond, src, theme, edge_label)
        return method(g, cond, src, theme, edge_label)

    @contextmanager
    def _phrase_box(self, g: graphviz.Digraph, phrase: str, fields: str,
                    theme: Theme) -> Iterator[graphviz.Digraph]:
        with g.subgraph(name=f"cluster_{self._id('phrase')}") as box:
            box.attr(label=label(f'"{phrase}"'), tooltip=label(fields), style="dotted,rounded",
                     color=theme.line, fontcolor=theme.line, fontsize="10")
            yield box

    def leaf_dot(self, g: graphviz.Digraph, cond: Condition, src: str, theme: Theme,
                 edge_label: str) -> str:
        # Compare, Within and PhraseRef: the text generator raises for anything else.
        # A phrase the author wrote is drawn as the phrase, with the fields it means on hover.
        fields = format_condition(cond)
        phrase = phrase_of(cond)
        if phrase is None:
            node = self._node(g, "c", fields, theme)
        else:
            node = self._node(g, "c", describe_condition(cond), theme, tooltip=label(fields))
        self._edge(g, src, node, theme, edge_label)
        return node

    def and_dot(self, g: graphviz.Digraph, cond: And, src: str, theme: Theme,
                edge_label: str) -> str:
        current = src
        for phrase, run in phrase_runs(cond.items):
            first_label, edge_label = edge_label, ""
            if phrase is None:
                current = self.condition_dot(g, run[0], current, theme, first_label)
                continue
            # The conditions one phrase spliced into this AND, in a box named by it.
            with self._phrase_box(g, phrase, format_condition(And(tuple(run))), theme) as box:
                for i, item in enumerate(run):
                    current = self.condition_dot(box, item, current, theme,
                                                 first_label if i == 0 else "")
        return current

    def or_dot(self, g: graphviz.Digraph, cond: Or, src: str, theme: Theme,
               edge_label: str) -> str:
        fork = self._node(g, "or", "OR", theme, shape="diamond", style="filled",
                          fontsize="9")
        self._edge(g, src, fork, theme, edge_label)
        join = self._id("join")
        g.node(join, "", shape="point", width="0.12", color=theme.line)
        for item in cond.items:
            end = self.condition_dot(g, item, fork, theme)
            self._edge(g, end, join, theme)
        return join

    def not_dot(self, g: graphviz.Digraph, cond: Not, src: str, theme: Theme,
                edge_label: str) -> str:
        name = f"cluster_{self._id('not')}"
        with g.subgraph(name=name) as box:
            box.attr(label="NOT: this must be false", style="dashed,rounded", color=theme.line,
                     fontcolor=theme.line, fontsize="10")
            entry = self._node(box, "n", "NOT", theme, shape="invhouse", style="filled,bold")
            self._edge(g, src, entry, theme, edge_label)
            return self.condition_dot(box, cond.item, entry, theme)

    # -- the rule ------------------------------------------------------------------------

    def rule_dot(self) -> graphviz.Digraph:
        rule = self.rule
        head = [f"RULE {rule.id}"]
        if rule.description:
            head.append(rule.description)
        flags = [f"PRIORITY {rule.priority}"] if rule.priority else []
        if rule.exclusive:
            flags.append("EXCLUSIVE")
        if flags:
            head.append(", ".join(flags))
        start = self._id("rule")
        self.graph.node(start, "\\n".join(label(h) for h in head), fillcolor=HEADER.fill,
                        color=HEADER.line, shape="box", style="filled,bold")
        exit_node = self.condition_dot(self.graph, rule.condition, start, CONDITION, "IF")
        if not rule.actions:
            raise FormatError(f"rule {rule.id} has no actions")
        tails = []
        for action in rule.actions:
            node = self._node(self.graph, "a", format_action(action), ACTION)
            self._edge(self.graph, exit_node, node, ACTION, "THEN")
            tails.append(node)
        if rule.limit is not None:
            node = self._node(self.graph, "limit", format_node(rule.limit), ACTION,
                              shape="note", style="filled")
            for tail in tails:
                self.graph.edge(tail, node, style="dotted", arrowhead="none")
            tails = [node]
        if rule.hold_days or rule.hold_from:
            node = self._node(self.graph, "hold", f"{hold_text(rule)} (pending)", HOLD)
            for tail in tails:
                self._edge(self.graph, tail, node, HOLD)
            tails = [node]
        if rule.reverse_if is not None:
            reverse = self._node(self.graph, "rev", "REVERSE IF", REVERSAL, shape="cds",
                                 style="filled")
            for tail in tails:
                self._edge(self.graph, tail, reverse, REVERSAL, "later")
            end = self.condition_dot(self.graph, rule.reverse_if, reverse, REVERSAL)
            undo = self._node(self.graph, "rev", "reverse this rule's rewards", REVERSAL,
                              style="filled,bold")
            self._edge(self.graph, end, undo, REVERSAL)
        return self.graph


def rule_to_digraph(rule: Rule) -> graphviz.Digraph:
    return DotGenerator(rule).rule_dot()


def rule_to_dot(rule: Rule) -> str:
    return rule_to_digraph(rule).source


def program_to_dot(program: Program) -> dict[str, str]:
    """DOT source of every rule, keyed by rule id (in program order)."""
    return {rule.id: rule_to_dot(rule) for rule in program.rules}


def render_program(program: Program, fmt: Format, outdir: Path) -> list[Path]:
    """Write ``<rule id>.<fmt>`` for every rule into ``outdir``; return the paths written."""
    if fmt not in FORMATS:
        raise RenderError(f"unknown diagram format {fmt!r} (expected dot, svg or png)")
    sources = program_to_dot(program)
    if fmt != "dot" and shutil.which("dot") is None:
        raise GraphvizNotFoundError()
    outdir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for rule_id, source in sources.items():
        path = outdir / f"{rule_id}.{fmt}"
        if fmt == "dot":
            path.write_text(source, encoding="utf-8")
        else:
            try:
                data = graphviz.Source(source).pipe(format=fmt)
            except graphviz.ExecutableNotFound as e:
                raise GraphvizNotFoundError() from e
            except graphviz.CalledProcessError as e:
                raise RenderError(f"Graphviz failed on rule {rule_id}: {e.stderr!r}") from e
            path.write_bytes(data)
        written.append(path)
    return written
