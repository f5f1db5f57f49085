"""`rules catalog`: the static site's content, read back with an HTML parser.

Expected figures (rules, red and green nodes, example verdicts, JSON) are
computed from the model and ``run_examples``, never typed in.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from compiler.catalog import build_catalog, subtree_size
from compiler.dot import ACTION, CONDITION
from compiler.errors import CATALOG_DOT_MISSING, GraphvizNotFoundError
from compiler.highlight import lex
from compiler.text import format_node
from dsl.codec import dumps, program_to_json
from dsl.examples import run_examples
from dsl.model import And, Condition, Not, Or, Program, Rule
from dsl.parser import parse_text
from dsl.program import load_program
from referral.cli.rules import catalog, check

RULES_DIR = Path(__file__).resolve().parent.parent / "rules"
SHAPES = {"polygon", "path", "ellipse", "polyline"}


@click.group()
def rules() -> None:
    """A local group, as ``referral rules`` attaches the command."""


rules.add_command(catalog)
rules.add_command(check)


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    text: str = ""
    fill: str | None = None  # for an SVG node: its shape's fill


class Page(HTMLParser):
    """The elements of a page, in document order, each with the text inside it."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[Element] = []
        self._open: list[Element] = []
        self._svg_node: Element | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        el = Element(tag, {k: v or "" for k, v in attrs})
        self.elements.append(el)
        if tag == "g" and "node" in el.attrs.get("class", "").split():
            self._svg_node = el
        elif tag in SHAPES and self._svg_node is not None and self._svg_node.fill is None:
            self._svg_node.fill = el.attrs.get("fill")
        if tag not in {"meta", "link", "br"} and tag not in SHAPES:
            self._open.append(el)

    def handle_endtag(self, tag: str) -> None:
        if tag not in {e.tag for e in self._open}:
            return  # a void or self-closed element
        while self._open:
            if self._open.pop().tag == tag:
                break

    def handle_data(self, data: str) -> None:
        for el in self._open:
            el.text += data

    def by_id(self, element_id: str) -> Element:
        (found,) = [e for e in self.elements if e.attrs.get("id") == element_id]
        return found

    def svg_nodes(self, graph_id: str) -> list[Element]:
        """The nodes of the diagram whose graph has ``graph_id``."""
        start = self.elements.index(self.by_id(graph_id))
        out = []
        for el in self.elements[start + 1:]:
            if el.tag == "g" and el.attrs.get("class") == "graph":
                break
            if el.tag == "g" and "node" in el.attrs.get("class", "").split():
                out.append(el)
        return out


def parse(path: Path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    return page


def red_nodes(cond: Condition) -> int:
    """Boxes a condition draws: a box per comparison, an OR diamond, a NOT marker."""
    if isinstance(cond, And):
        return sum(red_nodes(c) for c in cond.items)
    if isinstance(cond, Or):
        return 1 + sum(red_nodes(c) for c in cond.items)
    if isinstance(cond, Not):
        return 1 + red_nodes(cond.item)
    return 1


def green_nodes(rule: Rule) -> int:
    return len(rule.actions) + (rule.limit is not None)


@pytest.fixture(scope="module")
def program() -> Program:
    return load_program([RULES_DIR]).program


@pytest.fixture(scope="module")
def site(program, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    build_catalog(program, out)
    return out


def _build(tmp_path: Path, text: str) -> tuple[Program, Path]:
    src = tmp_path / "r.rule"
    src.write_text(text, encoding="utf-8")
    program = load_program([src]).program
    out = tmp_path / "site"
    build_catalog(program, out)
    return program, out


def test_index_lists_every_rule(program, site):
    page = parse(site / "index.html")
    rows = [e for e in page.elements if e.tag == "tr" and e.attrs.get("id", "").startswith("rule-")]
    assert [r.attrs["id"] for r in rows] == [f"rule-{r.id}" for r in program.rules]
    links = [e.attrs["href"] for e in page.elements if e.tag == "a" and "href" in e.attrs]
    for rule in program.rules:
        assert f"rule/{rule.id}.html" in links
        assert (site / "rule" / f"{rule.id}.html").is_file()
        row = page.by_id(f"rule-{rule.id}").text
        assert rule.description in row
        assert str(rule.priority) in row
        if rule.hold_days:
            assert f"{rule.hold_days} days" in row


def test_rule_pages_have_inline_svg_with_red_conditions_and_green_actions(program, site):
    for rule in program.rules:
        page = parse(site / "rule" / f"{rule.id}.html")
        assert any(e.tag == "svg" for e in page.elements)
        nodes = page.svg_nodes("flow")
        fills = [n.fill for n in nodes]
        assert fills.count(CONDITION.fill) == red_nodes(rule.condition), rule.id
        assert fills.count(ACTION.fill) == green_nodes(rule), rule.id
        classes = [n.attrs["class"].split() for n in nodes]
        assert sum("action" in c for c in classes) == len(rule.actions)


def test_page_ids_are_unique(program, site):
    for rule in program.rules:
        page = parse(site / "rule" / f"{rule.id}.html")
        ids = [e.attrs["id"] for e in page.elements if "id" in e.attrs]
        assert len(ids) == len(set(ids)), rule.id


def test_examples_show_their_verdict(program, site):
    results = {r.name: r for r in run_examples(program)}
    shown = set()
    for rule in program.rules:
        page = parse(site / "rule" / f"{rule.id}.html")
        for article in (e for e in page.elements if e.tag == "article"):
            name = next(e for e in page.elements[page.elements.index(article):] if e.tag == "h3")
            verdict, title = name.text[:4], name.text[4:]
            assert verdict == ("PASS" if results[title].passed else "FAIL")
            assert ("pass" if results[title].passed else "fail") in article.attrs["class"]
            shown.add(title)
    # Every example is shown on at least its own file's rule pages.
    files_with_rules = {r.source.file for r in program.rules}
    assert shown == {e.name for e in program.examples if e.source.file in files_with_rules}


def test_failing_example_is_rendered_as_failing(tmp_path):
    program, out = _build(tmp_path, (
        'RULE r "d"\n  IF a.x = 1\n  THEN ISSUE ₹5 REWARD TO referrer\n'
        'EXAMPLE "pays" GIVEN a.x = 1 EXPECT ISSUE ₹5 TO referrer\n'
        'EXAMPLE "wrong" GIVEN a.x = 1 EXPECT ISSUE ₹6 TO referrer\n'
    ))
    page = parse(out / "rule" / "r.html")
    assert page.by_id("example-1").attrs["class"] == "example pass"
    assert page.by_id("example-2").attrs["class"] == "example fail"
    facts = _facts(page, "example-2")
    assert facts["Expected"] == "ISSUE ₹6 TO referrer"
    assert facts["Actual"] == "ISSUE ₹5 TO referrer"
    assert page.by_id("example-2").text.split()[0] == "FAILwrong"
    index = (out / "index.html").read_text(encoding="utf-8")
    assert "1 passed" in index and "1 failed" in index


def _facts(page: Page, article_id: str) -> dict[str, str]:
    """The <dt>/<dd> pairs inside an element."""
    start = page.elements.index(page.by_id(article_id))
    terms = [e for e in page.elements[start:] if e.tag in {"dt", "dd", "article"}][1:]
    terms = terms[: next((i for i, e in enumerate(terms) if e.tag == "article"), len(terms))]
    return {dt.text: dd.text for dt, dd in zip(terms[::2], terms[1::2], strict=True)}


PATHS = '''\
RULE r
  IF a.x = 1
  AND (b.x = 2 OR (c.x = 3 AND d.x = 4))
  AND NOT e.x = 5
  THEN ISSUE ₹5 REWARD TO referrer
  AND ISSUE 10% OF f.amount REWARD TO referee
  REVERSE IF g.refunded = true

EXAMPLE "or takes its first branch"
  GIVEN a.x = 1, b.x = 2, e.x = 0, f.amount = ₹100, g.refunded = true
  EXPECT ISSUE ₹5 TO referrer AND ISSUE ₹10 TO referee

EXAMPLE "stops at the first condition"
  GIVEN a.x = 0
  EXPECT NOTHING

EXAMPLE "the percentage of a missing amount pays nothing"
  GIVEN a.x = 1, b.x = 0, c.x = 3, d.x = 4, e.x = 0
  EXPECT ISSUE ₹5 TO referrer
'''


def _marks(page: Page, graph_id: str) -> dict[str, tuple[str, ...]]:
    """Node id (without the graph prefix) -> its classes after ``node``."""
    return {
        n.attrs["id"].removeprefix(f"{graph_id}_"): tuple(n.attrs["class"].split()[1:])
        for n in page.svg_nodes(graph_id)
        if n.attrs["id"].startswith(f"{graph_id}_") and "_node" not in n.attrs["id"]
    }


def test_example_paths_are_marked_on_the_diagram(tmp_path):
    _program, out = _build(tmp_path, PATHS)
    page = parse(out / "rule" / "r.html")
    # c1 a.x, or1, c2 b.x, c3 c.x, c4 d.x, n1 NOT, c5 e.x, a1 a2, rev: header, c6, undo.
    assert _marks(page, "ex1") == {
        "c1": ("condition", "true"), "or1": ("condition", "true"),
        "c2": ("condition", "true"), "c3": ("condition", "skipped"),
        "c4": ("condition", "skipped"), "n1": ("condition", "true"),
        "c5": ("condition", "false"), "a1": ("action", "paid"), "a2": ("action", "paid"),
        "rev1": ("reverse",), "c6": ("reverse-condition", "true"),
        "rev2": ("reverse-action", "reversed"),
    }
    second = _marks(page, "ex2")
    assert second["c1"] == ("condition", "false")
    assert {second[n] for n in ("or1", "c2", "c3", "c4", "n1", "c5")} == {
        ("condition", "skipped")}
    assert second["a1"] == second["a2"] == ("action", "skipped")
    assert second["c6"] == ("reverse-condition", "false")  # missing: false, and said why
    third = _marks(page, "ex3")
    assert [third[n][1] for n in ("c1", "or1", "c2", "c3", "c4")] == [
        "true", "true", "false", "true", "true"]
    assert third["a1"] == ("action", "paid") and third["a2"] == ("action", "nothing")
    # The unmarked diagram carries kinds only, and held conditions get a tick mark.
    assert set(_marks(page, "flow").values()) <= {
        ("condition",), ("action",), ("reverse",), ("reverse-condition",), ("reverse-action",)}
    ex1 = page.by_id("example-1").text
    assert "✓ a.x = 1" in ex1 and "✗ e.x = 5" in ex1


def test_suppressed_reward_and_evaluation_error_are_shown(tmp_path):
    _program, out = _build(tmp_path, (
        'RULE big PRIORITY 20 EXCLUSIVE IF a.x >= 10 THEN ISSUE ₹9 REWARD TO referrer\n'
        'RULE small IF a.x >= 1 THEN ISSUE ₹1 REWARD TO referrer '
        'AND ISSUE ₹2 REWARD TO referee\n'
        'EXAMPLE "big wins" GIVEN a.x = 10 EXPECT ISSUE ₹9 TO referrer AND ISSUE ₹2 TO referee\n'
        'EXAMPLE "bad data" GIVEN a.x = "ten" EXPECT NOTHING\n'
    ))
    page = parse(out / "rule" / "small.html")
    marks = _marks(page, "ex1")
    assert marks["a1"] == ("action", "suppressed") and marks["a2"] == ("action", "paid")
    assert _facts(page, "example-1")["This rule"] == (
        "the rule matches: pays ₹2 to referee (suppressed by big: ₹1 to referrer)")
    facts = _facts(page, "example-2")
    assert "FAIL" in page.by_id("example-2").text
    assert facts["Error"].startswith("rule big: a.x: expected a number, found the string")
    assert not any(e.tag == "svg" for e in page.elements[page.elements.index(
        page.by_id("example-2")):])  # no path to draw


def test_subtree_size_counts_connectives():
    program = load_program([RULES_DIR]).program
    rule = program.rule("paid_referrer_bonus")
    # and(plan, subscribed, or(country, payment), not(id), within) -> 1 + 1 + 1 + 3 + 2 + 1
    assert subtree_size(rule.condition) == 9


def test_json_model_matches_program_to_json(program, site):
    model = program_to_json(program)
    for i, rule in enumerate(program.rules):
        page = parse(site / "rule" / f"{rule.id}.html")
        assert json.loads(page.by_id("model-json").text) == model["rules"][i]
    assert (site / "model.json").read_text(encoding="utf-8") == dumps(program)


CSP = re.compile(r'<meta http-equiv="Content-Security-Policy" content="([^"]*)">')


def assert_only_own_script(path: Path) -> None:
    """At most one script, inline, and the page's CSP allows exactly it by its hash."""
    text = path.read_text(encoding="utf-8")
    (policy,) = CSP.findall(text)
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", text, re.S)
    assert len(scripts) == text.lower().count("<script") <= 1, path
    assert "default-src 'none'" in policy
    if not scripts:
        assert "script-src" not in policy, path
        return
    ((attrs, code),) = scripts
    assert attrs == "", (path, attrs)  # no src, no type tricks
    digest = base64.b64encode(hashlib.sha256(code.encode("utf-8")).digest()).decode()
    assert policy.endswith(f"; script-src 'sha256-{digest}'"), (path, policy)


def test_no_network_references(site):
    pages = sorted(site.rglob("*.html"))
    assert len(pages) > 1
    for path in pages:
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"https?://", text), path
        assert "<img" not in text.lower()
        assert_only_own_script(path)
        for el in parse(path).elements:
            assert "src" not in el.attrs, (path, el)
            target = el.attrs.get("href", "#").split("#")[0]
            if target and not target.startswith("data:"):
                assert (path.parent / target).is_file(), (path, target)  # a page of the site


def test_source_is_highlighted_with_grammar_tokens(program, site):
    rule = program.rule("paid_referrer_bonus")
    page = parse(site / "rule" / "paid_referrer_bonus.html")
    spans = [(e.attrs["class"], e.text) for e in page.elements
             if e.tag == "span" and e.attrs.get("class") in
             {"kw", "str", "money", "num", "path", "name", "phrase", "comment", "op", "const"}]
    assert ("kw", "RULE") in spans and ("name", rule.id) in spans
    assert ("str", f'"{rule.description}"') in spans
    assert ("money", "₹500") in spans and ("num", "10%") in spans
    assert ("path", "referee.first_payment") in spans
    assert ("phrase", "referrer is a paid user") in spans
    assert ("const", "true") in spans
    assert any(css == "comment" for css, _ in spans)
    # Only the rule: not the EXAMPLEs after it.
    assert ("kw", "EXAMPLE") not in spans


def test_rule_without_a_source_file_shows_its_canonical_text(tmp_path):
    text = 'rule r if a.x = 1 then issue ₹5 reward  # written untidily\n'
    program = parse_text(text, str(tmp_path / "gone.rule"))  # no such file on disk
    build_catalog(program, tmp_path / "site")
    page = parse(tmp_path / "site" / "rule" / "r.html")
    code = next(e for e in page.elements if e.tag == "pre" and "source" in e.attrs["class"])
    assert code.text == format_node(program.rules[0])
    assert any(e.text.startswith("Canonical text") for e in page.elements if e.tag == "p")


def test_highlight_excerpt_keeps_leading_comments_only():
    text = ('# about a\n\nRULE a IF x.y = 1 THEN ISSUE ₹1 REWARD\n'
            '# about the example\nEXAMPLE "e" GIVEN x.y = 1 EXPECT NOTHING\n')
    lexed = lex(text)
    assert lexed.statements == {3: 3, 5: 5}
    excerpt = lexed.excerpt(3)
    assert excerpt.startswith('<span class="comment"># about a</span>\n\n<span class="kw">RULE')
    assert "about the example" not in excerpt and "EXAMPLE" not in excerpt


HOSTILE = (
    'RULE r "<script>alert(1)</script> & <img src=x onerror=alert(2)> \\"q\\" http://evil.example/x.js"\n'
    '  IF a.name = "</pre><b>bold</b>"\n'
    '  THEN ISSUE ₹5 REWARD TO referrer\n'
    'EXAMPLE "<i>name</i>" GIVEN a.name = "</pre><b>bold</b>" EXPECT ISSUE ₹5 TO referrer\n'
)


def test_hostile_text_is_escaped_everywhere(tmp_path):
    _program, out = _build(tmp_path, HOSTILE)
    for path in (out / "index.html", out / "rule" / "r.html"):
        text = path.read_text(encoding="utf-8")
        # The page's own script holds the rule's strings as JavaScript strings, where "</"
        # is escaped, so they cannot end the script: outside it, no markup gets through.
        assert "</" not in re.sub(r"^<script>|</script>$", "", "".join(
            re.findall(r"<script>.*?</script>", text, re.S)))
        markup = re.sub(r"<script>.*?</script>", "", text, flags=re.S)
        for raw in ("<script", "<img", "<b>", "<i>", "</pre><b>"):
            assert raw not in markup, (path, raw)
        assert "&lt;script&gt;" in text or "&#60;script&#62;" in text
        page = parse(path)
        assert not [e for e in page.elements if e.tag in {"img", "b", "i"}]
        assert_only_own_script(path)
        assert not any(e.attrs.get(a, "").startswith("http")
                       for e in page.elements for a in ("src", "href"))
    page = parse(out / "rule" / "r.html")
    heading = next(e for e in page.elements if e.tag == "p" and "description" in
                   e.attrs.get("class", ""))
    assert heading.text.startswith("<script>alert(1)</script> & <img")
    article = page.by_id("example-1")
    assert "<i>name</i>" in article.text and "PASS" in article.text


# ---------------------------------------------------------------- the command


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_cli_writes_the_site(runner, program, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(rules, ["catalog", str(RULES_DIR), "-o", str(out)])
    assert result.exit_code == 0, result.output
    passed = sum(r.passed for r in run_examples(program))
    assert result.stdout == (
        f"wrote {out / 'index.html'} ({len(program.rules)} rules, {len(program.examples)} "
        f"examples: {passed} passed, {len(program.examples) - passed} failed)\n"
    )
    assert sorted(p.name for p in (out / "rule").iterdir()) == sorted(
        f"{r.id}.html" for r in program.rules)


def test_cli_rule_errors_as_rules_check(runner, tmp_path):
    bad = tmp_path / "bad.rule"
    bad.write_text('RULE a\n  IF referee.plan = \n  THEN ISSUE ₹5 REWARD TO referrer\n'
                   'RULE b IF x is undefined here THEN ISSUE ₹5 REWARD\n', encoding="utf-8")
    out = tmp_path / "out"
    got = runner.invoke(rules, ["catalog", str(bad), "-o", str(out)])
    want = runner.invoke(rules, ["check", str(bad)])
    assert got.exit_code == want.exit_code == 1
    assert got.stderr == want.stderr and got.stderr.count("error:") >= 1
    assert got.stdout == ""
    assert not out.exists()


def test_cli_missing_dot(runner, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no `dot` anywhere on it
    out = tmp_path / "out"
    result = runner.invoke(rules, ["catalog", str(RULES_DIR), "-o", str(out)])
    assert result.exit_code == 1
    assert result.stderr == f"error: {CATALOG_DOT_MISSING}\n"
    assert "apt-get install graphviz" in result.stderr
    assert not out.exists()


def test_build_catalog_missing_dot(program, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(GraphvizNotFoundError, match="graphviz"):
        build_catalog(program, tmp_path / "out")


def test_cli_output_must_be_a_directory(runner, tmp_path):
    file = tmp_path / "taken"
    file.write_text("", encoding="utf-8")
    result = runner.invoke(rules, ["catalog", str(RULES_DIR), "-o", str(file)])
    assert result.exit_code == 2
    assert "is a file" in result.stderr


# ---------------------------------------------------------------- phrases, fit, overview, overlaps

def _node_titles(page: Page, graph_id: str) -> dict[str, tuple[str, str]]:
    """Node id -> (its label text, its <title>: what the browser shows on hover)."""
    out = {}
    for node in page.svg_nodes(graph_id):
        start = page.elements.index(node)
        title = next(e for e in page.elements[start:] if e.tag == "title")
        inside = []
        for e in page.elements[start + 1:]:
            if e.tag == "g" and {"node", "edge", "cluster"} & set(e.attrs.get("class", "").split()):
                break
            inside.append(e)
        texts = [e.text for e in inside if e.tag == "text"]
        out[node.attrs["id"].removeprefix(f"{graph_id}_")] = (" ".join(texts), title.text)
    return out


def test_diagrams_show_the_authors_phrases_with_the_fields_on_hover(site):
    page = parse(site / "rule" / "paid_referrer_bonus.html")
    titles = _node_titles(page, "flow")
    assert titles["c1"] == ("referrer is a paid user", 'referrer.plan = "paid"')
    assert titles["c2"] == ("referred user subscribes", "referee.subscribed = true")
    assert titles["c3"][0] == 'referee.country IN ["IN", "US"]'  # written with its fields
    cond = next(e for e in page.elements if e.tag == "dd" and "cond" in e.attrs.get("class", ""))
    assert cond.text.startswith("referrer is a paid user AND referred user subscribes AND (")
    assert cond.attrs["title"].startswith('referrer.plan = "paid" AND referee.subscribed = true')


def test_example_diagram_hover_says_why_and_what_the_phrase_means(site):
    page = parse(site / "rule" / "paid_referrer_bonus.html")
    graph = next(e.attrs["id"] for e in page.elements
                 if e.tag == "g" and e.attrs.get("class") == "graph" and e.attrs["id"] != "flow")
    label, title = _node_titles(page, graph)["c1"]
    assert label == "✓ referrer is a paid user"
    note, fields = title.split("\n")
    assert note.startswith("referrer.plan") and fields == 'referrer.plan = "paid"'


def test_phrase_spliced_into_an_and_is_a_box(tmp_path):
    _program, out = _build(tmp_path, (
        'DEFINE "qualifies" AS a.x = 1 AND a.y = 2\n'
        'RULE r IF qualifies AND a.z = 3 THEN ISSUE ₹5 REWARD TO referrer\n'
        'RULE s IF NOT qualifies THEN ISSUE ₹5 REWARD TO referee\n'))
    r = (out / "rule" / "r.html").read_text(encoding="utf-8")
    assert "&quot;qualifies&quot;</text>" in r or '"qualifies"</text>' in r  # the box's label
    page = parse(out / "rule" / "r.html")
    titles = _node_titles(page, "flow")
    assert [titles[c][0] for c in ("c1", "c2", "c3")] == ["a.x = 1", "a.y = 2", "a.z = 3"]
    index = parse(out / "index.html")
    conds = [e for e in index.elements if e.tag == "td" and "cond" in e.attrs.get("class", "")]
    assert conds[0].text == "qualifies AND a.z = 3"
    assert conds[0].attrs["title"] == "a.x = 1 AND a.y = 2 AND a.z = 3"
    assert conds[2].text == "NOT qualifies"


def test_wide_rules_are_drawn_top_down_to_fit(program, site):
    from compiler.catalog import MAX_WIDTH_PT, svg_width

    for rule in program.rules:
        text = (site / "rule" / f"{rule.id}.html").read_text(encoding="utf-8")
        widths = [svg_width(m) for m in re.findall(r"<svg\b[^>]*>", text)]
        assert widths and all(w <= MAX_WIDTH_PT for w in widths), (rule.id, widths)


def test_index_is_one_table_of_every_rule_with_search_text(program, site):
    page = parse(site / "index.html")
    header = [e.text for e in page.elements if e.tag == "th"][:10]
    assert header == ["Rule", "Description", "Priority", "Exclusive", "Conditions", "Rewards",
                      "Limit", "Hold", "Reverse if", "Examples"]
    gold = page.by_id("rule-gold_tier")
    assert "EXCLUSIVE" in gold.text and "LIMIT ₹10,000 PER referrer PER MONTH" in gold.text
    search = gold.attrs["data-search"]
    for word in ("gold_tier", "first payment", "referee.first_payment", "referred user subscribes",
                 "referee.subscribed = true", "₹1,000"):
        assert word.lower() in search, word
    assert page.by_id("search").attrs["type"] == "search"


def test_overlaps_page_lists_tier_families_and_double_pays(tmp_path, site):
    page = parse(site / "overlaps.html")
    family = page.by_id("tiers-1")
    assert "referee.first_payment" in family.text
    assert "[₹5,000, ₹10,000)" in family.text and "[₹10,000, ∞)" in family.text
    assert "No gap and no overlap" in family.text
    _program, out = _build(tmp_path, (
        "RULE low PRIORITY 1 EXCLUSIVE IF x.a >= ₹1 AND x.a < ₹5 THEN ISSUE ₹1\n"
        "RULE mid PRIORITY 1 EXCLUSIVE IF x.a >= ₹6 AND x.a <= ₹9 THEN ISSUE ₹1\n"
        "RULE top PRIORITY 1 EXCLUSIVE IF x.a >= ₹9 THEN ISSUE ₹1\n"
        "RULE one IF x.b THEN ISSUE ₹1\nRULE two IF x.c THEN ISSUE ₹1\n"))
    page = parse(out / "overlaps.html")
    findings = [e.text.strip() for e in page.elements if e.tag == "li"]
    assert findings == [
        "Gap: [₹5, ₹6) pays neither low nor mid.",
        "Overlap: [₹9, ₹9] matches mid and top, which have equal priority: both pay."]
    assert "one and two" in page.by_id("double-pays").text
