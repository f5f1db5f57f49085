"""Rule program -> a static HTML catalog: an index page and one page per rule.

The index is every rule in one table, with a search box; each rule page shows
the rule's source text (highlighted with the grammar's own tokens,
``compiler.highlight``), its diagram (``compiler.dot``, rendered by Graphviz into
inline SVG, top down when left to right would not fit the page; the authors'
DEFINE phrases drawn, their fields on hover), the EXAMPLEs that involve it with
the path each one takes through the diagram, a "try a referral" form, and its
JSON model; ``overlaps.html`` shows the tiers' ranges, gaps and overlaps
(``dsl.validate.tier_families``).  The pages are plain files with inline CSS and
at most one inline script each, allowed by its hash in the page's
Content-Security-Policy, and no external assets: they open from disk, offline.

An example's path is drawn from the evaluation trace (``dsl.evaluate``): the
trace lists the conditions in the pre-order of ``dsl.model.walk``, in which the
diagram generator also visits them, so the n-th condition visited is the n-th
traced, and a short-circuited subtree is one "not evaluated" entry (the notes
are ``compiler.trace.step_note``).  Each example gets its own small SVG, so the
highlighting needs no JavaScript.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

import graphviz
import jinja2
from markupsafe import Markup

from compiler.dot import CONDITION, DotGenerator, RankDir, Theme, label
from compiler.errors import CATALOG_DOT_MISSING, GraphvizNotFoundError, RenderError
from compiler.highlight import Lexed, highlight, lex
from compiler.js import js_string, program_js
from compiler.text import describe_condition, format_action, format_condition, format_node
from compiler.trace import step_note
from dsl.codec import dumps, rule_to_json
from dsl.errors import EvaluationError
from dsl.evaluate import CompiledProgram, Evaluation, Reward, RuleOutcome, compile_program
from dsl.examples import ExampleResult, context_from_given, describe_rewards, run_examples
from dsl.model import (
    And,
    Compare,
    Condition,
    Example,
    FieldRef,
    Not,
    Or,
    PercentReward,
    Program,
    Rule,
    Within,
    walk,
)
from dsl.money import Money, format_money
from dsl.program import LoadedProgram
from dsl.validate import double_pays, tier_families

RULE_DIR = "rule"  # rule pages live in <out>/rule/<id>.html (a rule may be called "index")

# How an example's path is drawn: extra node attributes and a mark before the label.
MARKS: dict[str, tuple[str, dict[str, str]]] = {
    "true": ("✓ ", {"penwidth": "3", "color": "#1a7f37"}),
    "false": ("✗ ", {"penwidth": "3", "color": "#cc0000", "fontcolor": "#990000"}),
    "paid": ("✓ ", {"penwidth": "3", "color": "#1a7f37"}),
    "reversed": ("✓ ", {"penwidth": "3", "color": "#b45f06"}),
}
DIMMED = {"fillcolor": "#f3f3f3", "color": "#bbbbbb", "fontcolor": "#999999"}


# ---------------------------------------------------------------- example paths


@dataclass(frozen=True)
class Mark:
    """How one diagram node fared in one example: a status and the reason why."""

    status: str  # true | false | skipped | paid | suppressed | nothing | reversed
    note: str = ""


@dataclass(frozen=True)
class PathMarks:
    """One example's path through one rule's diagram."""

    conditions: tuple[Mark, ...]  # pre-order over the condition, then REVERSE IF
    actions: tuple[Mark, ...]
    reverse: Mark | None


def subtree_size(cond: Condition) -> int:
    """Nodes of a condition tree, connectives included (the trace's pre-order)."""
    return sum(1 for _ in walk(cond))


_TRACE_KIND = {And: "and", Or: "or", Not: "not", Compare: "compare", Within: "within"}


def condition_marks(
    cond: Condition, steps: Sequence[Mapping[str, Any]], i: int, out: list[Mark]
) -> int:
    """Append the marks of ``cond``'s subtree (pre-order) read from ``steps[i:]``;
    return the index of the first step after it.

    The trace has one step per node evaluated, in the walk's order; a subtree
    that was short-circuited is one "not evaluated" step for all its nodes.
    """
    nodes = list(walk(cond))
    n = 0
    while n < len(nodes):
        node, step = nodes[n], steps[i]
        kind = _TRACE_KIND.get(type(node))
        if step.get("kind") != kind:
            raise ValueError(f"trace step {i} is {step.get('kind')!r}, the model has {kind!r}")
        i += 1
        if step.get("result") is None and step.get("reason") == "not evaluated":
            size = subtree_size(node)
            out.extend([Mark("skipped", "not evaluated")] * size)
            n += size
        else:
            out.append(Mark("true" if step["result"] else "false", step_note(step)))
            n += 1
    return i


def path_marks(
    rule: Rule, outcome: RuleOutcome, compiled: CompiledProgram, context: Mapping[str, Any]
) -> PathMarks:
    """Which conditions held and which actions paid for ``rule`` in one evaluation."""
    steps = outcome.trace or []
    marks: list[Mark] = []
    i = condition_marks(rule.condition, steps, 0, marks)
    reverse = None
    if rule.reverse_if is not None:
        if steps[i].get("kind") != "reverse_if":
            raise ValueError(f"trace step {i} should be REVERSE IF")
        i = condition_marks(rule.reverse_if, steps, i + 1, marks)
        reverse = Mark("reversed" if outcome.reverse else "skipped",
                       "REVERSE IF holds" if outcome.reverse else "REVERSE IF does not hold")
    actions: list[Mark] = []
    compiled_rule = next(cr for cr in compiled.rules if cr.rule.id == rule.id)
    suppressed = list(outcome.suppressed)
    for act in compiled_rule.actions:
        if not outcome.matched:
            actions.append(Mark("skipped", "the condition does not hold"))
            continue
        got = act(context)
        if not isinstance(got, Reward):
            actions.append(Mark("nothing", str(got)))
        elif got in suppressed:
            suppressed.remove(got)
            actions.append(Mark("suppressed", f"suppressed by EXCLUSIVE {outcome.suppressed_by}"))
        else:
            actions.append(Mark("paid", f"pays {format_money(got.amount)} to {got.role}"))
    return PathMarks(tuple(marks), tuple(actions), reverse)


# ---------------------------------------------------------------- diagrams


class CatalogDot(DotGenerator):
    """The rule's diagram with SVG ids and classes on every node, and optionally
    one example's path marked on it."""

    def __init__(self, rule: Rule, graph_id: str, marks: PathMarks | None = None,
                 rankdir: RankDir = "LR") -> None:
        super().__init__(rule, rankdir)
        self.graph_id = graph_id
        self.marks = marks
        self._visited = 0  # conditions visited so far (pre-order)
        self._owner: int | None = None  # the condition whose node comes next
        self._actions = 0
        self._rev_nodes = 0

    def rule_dot(self) -> graphviz.Digraph:
        graph = super().rule_dot()
        # Last, so that the NOT clusters do not inherit it; Graphviz prefixes the ids it
        # makes up (edges, clusters) with it, so several diagrams share a page.
        graph.attr("graph", id=self.graph_id)
        return graph

    def condition_dot(self, g: graphviz.Digraph, cond: Condition, src: str, theme: Theme,
                      edge_label: str = "") -> str:
        self._owner = self._visited
        self._visited += 1
        try:
            return super().condition_dot(g, cond, src, theme, edge_label)
        finally:
            self._owner = None

    def _node(self, g: graphviz.Digraph, prefix: str, text: str, theme: Theme,
              **attrs: str) -> str:
        owner, self._owner = self._owner, None
        kind, mark = self._role(prefix, theme, owner)
        attrs["id"] = f"{self.graph_id}_{prefix}{self._counters.get(prefix, 0) + 1}"
        classes = [kind]
        if mark is not None:
            classes.append(mark.status)
            glyph, extra = MARKS.get(mark.status, ("", DIMMED))
            text = glyph + text
            attrs.update(extra)
            # The base class sets these two from the theme.
            theme = replace(theme, fill=attrs.pop("fillcolor", theme.fill),
                            line=attrs.pop("color", theme.line))
            if mark.status not in MARKS:
                attrs["style"] = attrs.get("style", "rounded,filled") + ",dashed"
            if mark.note:
                fields = attrs.get("tooltip")
                attrs["tooltip"] = label(mark.note) + (f"\\n{fields}" if fields else "")
        attrs["class"] = " ".join(classes)
        return super()._node(g, prefix, text, theme, **attrs)

    def _role(self, prefix: str, theme: Theme, owner: int | None) -> tuple[str, Mark | None]:
        marks = self.marks
        if owner is not None:
            kind = "condition" if theme is CONDITION else "reverse-condition"
            return kind, marks.conditions[owner] if marks else None
        if prefix == "a":
            self._actions += 1
            return "action", marks.actions[self._actions - 1] if marks else None
        if prefix == "rev":
            self._rev_nodes += 1
            if self._rev_nodes == 1:
                return "reverse", None
            return "reverse-action", marks.reverse if marks else None
        return {"rule": "header", "limit": "limit", "hold": "hold"}.get(prefix, prefix), None


_SVG_NOISE = re.compile(r"<!--.*?-->\s*|\s+xmlns(?::\w+)?=\"[^\"]*\"", re.S)
# Graphviz puts a tooltip on an <a> around the shape and the node's DOT name in its
# <title>, which is what browsers show on hover: the tooltip goes into the <title>.
_TOOLTIP = re.compile(r'<title>[^<]*</title>(\s*<g id="a_[^"]*"><a xlink:title="([^"]*)">)')
_SVG_WIDTH = re.compile(r'<svg\b[^>]*?\swidth="([\d.]+)pt"')
# Widest diagram drawn left to right: the page's column (1,200 px less its padding, less
# an example's border) in points; a wider rule is drawn top down.
MAX_WIDTH_PT = 820.0


def svg_width(svg: str) -> float:
    """The width Graphviz gave an SVG, in points."""
    found = _SVG_WIDTH.search(svg)
    return float(found.group(1)) if found else 0.0


def _pipe_svg(digraph: graphviz.Digraph, rule_id: str) -> str:
    try:
        return digraph.pipe(format="svg", encoding="utf-8")
    except graphviz.ExecutableNotFound as e:
        raise GraphvizNotFoundError(CATALOG_DOT_MISSING) from e
    except graphviz.CalledProcessError as e:
        raise RenderError(f"Graphviz failed on rule {rule_id}: {e.stderr!r}") from e


def fitting_rankdir(rule: Rule) -> RankDir:
    """Left to right when the rule's diagram fits the page's column, else top down (an AND
    chain then runs down the page, and only OR branches take width)."""
    wide = svg_width(_pipe_svg(CatalogDot(rule, "flow").rule_dot(), rule.id)) > MAX_WIDTH_PT
    return "TB" if wide else "LR"


def render_svg(digraph: graphviz.Digraph, rule_id: str) -> Markup:
    """Graphviz SVG made fit to inline in HTML: no XML prolog, doctype, comments or
    namespace URLs (the HTML parser knows SVG), so the page names no URL at all."""
    svg = _pipe_svg(digraph, rule_id)
    svg = _SVG_NOISE.sub("", svg[svg.index("<svg"):])
    svg = _TOOLTIP.sub(lambda m: f"<title>{m.group(2)}</title>{m.group(1)}", svg)
    return Markup(svg.replace("<svg ", '<svg class="diagram" role="img" ', 1).strip())


# ---------------------------------------------------------------- try a referral

_KINDS: dict[type, str] = {Money: "money", date: "date", int: "number", Decimal: "number",
                           bool: "bool", str: "string"}
PLACEHOLDERS = {"money": "₹1,500, INR 1500.50 or 150000 (minor units)", "date": "2026-01-31",
                "number": "3 or 4.5", "string": "text", "list": '"IN", "US"',
                "any": "a value", "bool": ""}


@dataclass(frozen=True)
class TryField:
    """One input of a rule page's "try a referral" form."""

    path: str
    kind: str  # money | date | number | bool | string | list | any

    @property
    def placeholder(self) -> str:
        return PLACEHOLDERS[self.kind]


def page_rules(program: Program, rule: Rule) -> list[Rule]:
    """The rules that decide ``rule``'s outcome, in evaluation order: itself, and the
    EXCLUSIVE rules of higher priority (only they can suppress its rewards)."""
    return [r for r in program.by_priority()
            if r is rule or (r.exclusive and r.priority > rule.priority)]


def try_fields(rules: Sequence[Rule]) -> list[TryField]:
    """The fields the rules read, each with the kind of value it is compared with."""
    kinds: dict[str, str] = {}
    for rule in rules:
        for c in walk(*rule.conditions()):
            if isinstance(c, Within):
                kinds.setdefault(c.path, "date")
                kinds.setdefault(c.other, "date")
            elif isinstance(c, Compare):
                v = c.value
                if isinstance(v, FieldRef):
                    kinds.setdefault(c.path, "any")
                    kinds.setdefault(v.path, "list" if c.op in {"IN", "NOT IN"} else "any")
                elif c.op == "CONTAINS" or (isinstance(v, tuple) and c.op in {"=", "!="}):
                    kinds.setdefault(c.path, "list")
                else:
                    member = next((m for m in v if m is not None), None) if isinstance(
                        v, tuple) else v
                    kinds.setdefault(c.path, _KINDS.get(type(member), "any"))
        for a in rule.actions:
            if isinstance(a, PercentReward):
                kinds.setdefault(a.of, "money")
    return [TryField(path, kind) for path, kind in kinds.items()]


def fill_text(value: object) -> str:
    """A GIVEN value as one types it into the form."""
    if isinstance(value, str):
        return value
    if isinstance(value, tuple):
        return ", ".join(json.dumps(v, ensure_ascii=False) if isinstance(v, str) else fill_text(v)
                         for v in value)
    return format_node(value)


def try_script(program: Program, rule: Rule) -> InlineScript:
    rules = page_rules(program, rule)
    code = program_js(program, rules)
    return InlineScript(f"{code}const RULE = {js_string(rule.id)};\n{_asset('try.js')}")


# ---------------------------------------------------------------- pages


@dataclass
class ExampleView:
    """One example on one rule's page."""

    number: int
    example: Example
    result: ExampleResult
    outcome: RuleOutcome | None
    svg: Markup | None
    same_file: bool

    @property
    def anchor(self) -> str:
        return f"example-{self.number}"

    @property
    def expected(self) -> str:
        return describe_rewards(self.result.expected)

    @property
    def actual(self) -> str:
        return describe_rewards(self.result.actual)

    @property
    def given(self) -> list[tuple[str, str]]:
        return [(path, format_node(value)) for path, value in self.example.given]

    @property
    def rule_outcome(self) -> str:
        o = self.outcome
        if o is None:
            return "not evaluated (the example has an error)"
        if not o.matched:
            text = "the rule does not match"
        else:
            paid = [f"{format_money(r.amount)} to {r.role}" for r in o.rewards]
            text = "the rule matches: pays " + (", ".join(paid) if paid else "nothing")
            if o.suppressed:
                text += f" (suppressed by {o.suppressed_by}: " + ", ".join(
                    f"{format_money(r.amount)} to {r.role}" for r in o.suppressed) + ")"
        if o.reverse:
            text += "; REVERSE IF holds"
        return text


@dataclass
class RuleView:
    rule: Rule
    page: str  # relative to the site root
    source_file: str | None
    source_html: Markup
    svg: Markup
    model_json: str
    examples: list[ExampleView] = field(default_factory=list)
    fields: list[TryField] = field(default_factory=list)
    script: InlineScript | None = None

    def fill(self, example: ExampleView) -> str:
        """The example's GIVEN values for the form's fields, as JSON (path -> text)."""
        wanted = {f.path for f in self.fields}
        return json.dumps({path: fill_text(v) for path, v in example.example.given
                           if path in wanted}, ensure_ascii=False)

    @property
    def rewards(self) -> list[str]:
        return [format_action(a) for a in self.rule.actions]

    @property
    def limit(self) -> str:
        return format_node(self.rule.limit) if self.rule.limit is not None else ""

    @property
    def hold(self) -> str:
        return f"{self.rule.hold_days} days" if self.rule.hold_days else ""

    @property
    def conditions(self) -> str:
        """The IF in the author's words (DEFINEd phrases kept)."""
        return describe_condition(self.rule.condition)

    @property
    def condition_fields(self) -> str:
        """The IF with every phrase expanded to its fields."""
        return format_condition(self.rule.condition)

    @property
    def reverse(self) -> str:
        rev = self.rule.reverse_if
        return describe_condition(rev) if rev is not None else ""

    @property
    def reverse_fields(self) -> str:
        rev = self.rule.reverse_if
        return format_condition(rev) if rev is not None else ""

    @property
    def search_text(self) -> str:
        """What the index's search box matches: id, words, phrases, fields, rewards."""
        rule = self.rule
        paths = {c.path for c in walk(*rule.conditions()) if isinstance(c, (Compare, Within))}
        parts = [rule.id, rule.description or "", self.conditions, self.condition_fields,
                 self.reverse, self.reverse_fields, *self.rewards, self.limit, self.hold,
                 *sorted(paths)]
        return " ".join(" ".join(parts).lower().split())

    @property
    def location(self) -> str:
        pos = self.rule.source
        return f"{pos.file}:{pos.line}" if pos is not None and pos.file else ""

    @property
    def passed(self) -> int:
        return sum(1 for e in self.examples if e.result.passed)

    @property
    def failed(self) -> int:
        return sum(1 for e in self.examples if not e.result.passed)


@dataclass(frozen=True)
class InlineScript:
    """A page's one script, inline, and the CSP source that allows exactly it."""

    code: str

    @property
    def source(self) -> str:
        digest = hashlib.sha256(self.code.encode("utf-8")).digest()
        return "sha256-" + base64.b64encode(digest).decode("ascii")

    @property
    def tag(self) -> Markup:
        # "</" cannot end the script early: generated code escapes it in its strings.
        if "</" in self.code:
            raise RenderError("an inline script may not contain '</'")
        return Markup(f"<script>{self.code}</script>")


def _asset(name: str) -> str:
    return resources.files("compiler.templates").joinpath(name).read_text("utf-8")


@dataclass(frozen=True)
class CatalogResult:
    out_dir: Path
    index: Path
    pages: dict[str, Path]  # rule id -> page
    examples_passed: int
    examples_failed: int

    @property
    def files(self) -> list[Path]:
        return [self.index, *self.pages.values(), self.out_dir / "overlaps.html",
                self.out_dir / "model.json"]


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("compiler", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


class _Sources:
    """Each rule file read and lexed once."""

    def __init__(self) -> None:
        self._lexed: dict[str, Lexed | None] = {}

    def rule_html(self, rule: Rule) -> tuple[str | None, Markup]:
        pos = rule.source
        if pos is not None and pos.file and not pos.file.endswith(".json"):
            if pos.file not in self._lexed:
                try:
                    self._lexed[pos.file] = lex(Path(pos.file).read_text(encoding="utf-8"))
                except (OSError, UnicodeDecodeError):
                    self._lexed[pos.file] = None
            lexed = self._lexed[pos.file]
            if lexed is not None and pos.line in lexed.statements:
                return pos.file, lexed.excerpt(pos.line)
        # A rule from a JSON model (or a file since changed): its canonical text.
        return None, highlight(format_node(rule))


def _evaluate(compiled: CompiledProgram, example: Example) -> tuple[Evaluation | None, Any]:
    try:
        context = context_from_given(example.given)
        return compiled.evaluate(context, trace=True), context
    except EvaluationError:
        return None, None


def rule_views(program: Program, results: Sequence[ExampleResult]) -> list[RuleView]:
    """Everything a rule page shows, for every rule (in program order).

    ``results`` are ``run_examples(program)``, one per example of the program.
    """
    if shutil.which("dot") is None:
        raise GraphvizNotFoundError(CATALOG_DOT_MISSING)
    compiled = compile_program(program, default_currency=program.default_currency())
    evaluations = [_evaluate(compiled, ex) for ex in program.examples]
    sources = _Sources()
    views: list[RuleView] = []
    for rule in program.rules:
        source_file, source_html = sources.rule_html(rule)
        rankdir = fitting_rankdir(rule)
        view = RuleView(
            rule=rule,
            page=f"{RULE_DIR}/{rule.id}.html",
            source_file=source_file,
            source_html=source_html,
            svg=render_svg(CatalogDot(rule, "flow", rankdir=rankdir).rule_dot(), rule.id),
            model_json=json.dumps(rule_to_json(rule), indent=2, ensure_ascii=False),
            fields=try_fields(page_rules(program, rule)),
            script=try_script(program, rule),
        )
        for n, (example, result, (evaluation, context)) in enumerate(
            zip(program.examples, results, evaluations, strict=True), start=1
        ):
            outcome = None
            if evaluation is not None:
                outcome = next(o for o in evaluation.outcomes if o.rule_id == rule.id)
            same_file = (example.source is not None and rule.source is not None
                         and example.source.file == rule.source.file)
            if not same_file and not (outcome is not None and outcome.matched):
                continue
            svg = None
            if outcome is not None:
                marks = path_marks(rule, outcome, compiled, context)
                svg = render_svg(CatalogDot(rule, f"ex{n}", marks, rankdir).rule_dot(), rule.id)
            view.examples.append(ExampleView(n, example, result, outcome, svg, same_file))
        view.examples.sort(key=lambda e: not e.same_file)  # the rule's own file first
        views.append(view)
    return views


def build_catalog(program: Program | LoadedProgram, out_dir: Path) -> CatalogResult:
    """Write ``index.html``, ``rule/<id>.html`` per rule and ``model.json`` into ``out_dir``.

    Pages of rules no longer in the program are left alone (never deletes files).
    """
    if isinstance(program, LoadedProgram):
        program = program.program
    results = run_examples(program)
    views = rule_views(program, results)
    env = _environment()
    passed = sum(1 for r in results if r.passed)
    failed = len(results) - passed
    common = {
        "program": program,
        "rules": views,
        "passed": passed,
        "failed": failed,
        "format_condition": format_condition,
    }
    search = InlineScript(_asset("search.js"))
    files = {"index.html": env.get_template("index.html.j2").render(root="", script=search,
                                                                    **common),
             "draft.html": env.get_template("draft.html.j2").render(
                 root="", howto=_asset("draft.md"), script=None, **common),
             "overlaps.html": env.get_template("overlaps.html.j2").render(
                 root="", script=None, families=tier_families(program),
                 doubles=list(double_pays(program)), rule_dir=RULE_DIR, **common),
             "model.json": dumps(program)}
    template = env.get_template("rule.html.j2")
    for view in views:
        files[view.page] = template.render(root="../", view=view, script=view.script, **common)
    try:
        (out_dir / RULE_DIR).mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (out_dir / name).write_text(text, encoding="utf-8")
    except OSError as e:
        raise RenderError(f"cannot write the catalog into {out_dir}: {e.strerror or e}") from e
    index = out_dir / "index.html"
    pages = {view.rule.id: out_dir / view.page for view in views}
    return CatalogResult(out_dir, index, pages, passed, failed)


__all__ = [
    "CatalogDot",
    "CatalogResult",
    "Mark",
    "PathMarks",
    "build_catalog",
    "condition_marks",
    "path_marks",
    "render_svg",
    "rule_views",
    "subtree_size",
]
