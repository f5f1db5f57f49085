"""The catalog in a real browser: headless Chromium (Debian's) driven by Playwright.

The site of ``rules/`` is served on 127.0.0.1 and every page is loaded: no
console errors, no failed or outside requests, and each rule's diagram has as
many red and green nodes in the DOM as the rule has conditions and rewards.
A screenshot is kept under $TEST_ARTIFACTS (default tests/artifacts/).

Playwright only drives the browser; it never downloads one (no ``playwright
install``): Chromium comes from ``apt-get install chromium chromium-driver``,
which ``.ci/run`` does.  Without it the test is skipped, or fails in CI.
"""

from __future__ import annotations

import functools
import os
import shutil
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from compiler.catalog import build_catalog
from compiler.dot import ACTION, CONDITION
from dsl.program import load_program
from tests.conftest import IN_CI
from tests.test_catalog import RULES_DIR, green_nodes, red_nodes

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
INSTALL = "apt-get install chromium chromium-driver"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-quic", "--no-first-run", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS") or Path(__file__).parent / "artifacts")


def _unavailable(reason: str) -> None:
    message = f"{reason}; install it with `{INSTALL}`"
    if IN_CI:
        pytest.fail(f"headless Chromium is required in CI: {message}")
    pytest.skip(message)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not (os.access(CHROMIUM, os.X_OK) or shutil.which(CHROMIUM)):
        _unavailable(f"no Chromium at {CHROMIUM}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is missing (pip install -e '.[test]')")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    build_catalog(load_program([RULES_DIR]).program, out)
    return out


@pytest.fixture(scope="module")
def server(site) -> Iterator[str]:
    """The site over HTTP on an ephemeral port of 127.0.0.1."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(site)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()


class Watch:
    """What went wrong while a page loaded."""

    def __init__(self, page: Any, base: str) -> None:
        self.problems: list[str] = []
        self.requests: list[str] = []
        page.on("console", lambda m: m.type == "error" and self.problems.append(
            f"console error: {m.text}"))
        page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        page.on("requestfailed", lambda r: self.problems.append(
            f"request failed: {r.url} {r.failure}"))
        page.on("response", lambda r: r.status >= 400 and self.problems.append(
            f"HTTP {r.status}: {r.url}"))
        page.on("request", lambda r: self.requests.append(r.url))
        self.base = base

    def check(self) -> None:
        outside = [u for u in self.requests if not u.startswith(self.base)]
        assert not outside, f"requests outside the site: {outside}"
        assert not self.problems, "\n".join(self.problems)


_FILLS = """() => Array.from(document.querySelectorAll('svg.diagram g#flow g.node'))
  .map(g => { const s = g.querySelector('polygon, path, ellipse');
              return s ? s.getAttribute('fill') : null; })"""


def test_every_page_loads_cleanly_and_draws_its_diagram(browser, server, site, capsys):
    program = load_program([RULES_DIR]).program
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    watch = Watch(page, server)
    page.goto(server + "index.html", wait_until="load")
    assert page.title() == "Referral rules catalog"
    links = page.eval_on_selector_all("#rules a", "as => as.map(a => a.href)")
    assert links == [f"{server}rule/{r.id}.html" for r in program.rules]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shots = [ARTIFACTS / "catalog-index.png"]
    page.screenshot(path=str(shots[0]), full_page=True)

    for rule, link in zip(program.rules, links, strict=True):
        page.goto(link, wait_until="load")
        assert page.locator("h1 code").inner_text() == rule.id
        fills = page.evaluate(_FILLS)
        assert fills.count(CONDITION.fill) == red_nodes(rule.condition), rule.id
        assert fills.count(ACTION.fill) == green_nodes(rule), rule.id
        box = page.locator("svg.diagram").first.bounding_box()
        assert box is not None and box["width"] > 100 and box["height"] > 20
        examples = page.locator("article.example")
        assert examples.count() == page.locator("article.example svg.diagram").count()
    shots.append(ARTIFACTS / "catalog-rule.png")
    page.goto(links[0], wait_until="load")
    page.screenshot(path=str(shots[1]), full_page=True)
    watch.check()
    page.close()
    with capsys.disabled():
        print("\ncatalog screenshots: " + ", ".join(str(s) for s in shots))
    assert all(s.stat().st_size > 10_000 for s in shots)


def test_site_opens_from_disk(browser, site):
    """file:// with no server: the index links to the rule pages and back."""
    page = browser.new_page()
    watch = Watch(page, "file://")
    page.goto((site / "index.html").as_uri(), wait_until="load")
    page.locator("#rules a").first.click()
    page.wait_for_load_state("load")
    assert page.url.startswith((site / "rule").as_uri())
    assert page.locator("svg.diagram").count() >= 1
    page.locator("header.top a").click()
    page.wait_for_load_state("load")
    assert page.url == (site / "index.html").as_uri()
    watch.check()
    page.close()
