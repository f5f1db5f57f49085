"""EXAMPLE results -> JUnit XML (``rules test --junit``), as CI servers read test reports.

One ``<testsuite>`` per program, one ``<testcase>`` per EXAMPLE: a wrong payout
is a ``<failure>``, an example the evaluator refused (an EvaluationError) an
``<error>``.  The layout is the Ant/Jenkins one that GitLab, Jenkins and GitHub
reporters read, with pytest's ``file`` and ``line`` on each test case (what
annotation actions point at).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from dsl.examples import ExampleResult, describe_rewards


def _classname(result: ExampleResult) -> str:
    """The example's file as a dotted name (``rules/tiers.rule`` -> ``rules.tiers``)."""
    if result.source is None or not result.source.file:
        return "examples"
    path = Path(result.source.file)
    parts = [p for p in path.with_suffix("").parts if p not in {"/", "..", "."}]
    return ".".join(parts[-2:]) or "examples"


def examples_junit(results: Sequence[ExampleResult], suite: str, seconds: float = 0.0) -> str:
    """The JUnit XML text of one program's example results."""
    failures = sum(1 for r in results if not r.passed and r.error is None)
    errors = sum(1 for r in results if r.error is not None)
    counts = {"tests": str(len(results)), "failures": str(failures), "errors": str(errors)}
    time = f"{seconds:.3f}"
    root = ET.Element("testsuites", {"name": "referral rules test", "time": time, **counts})
    testsuite = ET.SubElement(root, "testsuite",
                              {"name": suite, "skipped": "0", "time": time, **counts})
    for r in results:
        case = ET.SubElement(testsuite, "testcase", name=r.name, classname=_classname(r))
        if r.source is not None:
            case.set("file", r.source.file)
            case.set("line", str(r.source.line))
        expected = describe_rewards(r.expected)
        if r.error is not None:
            el = ET.SubElement(case, "error", type="EvaluationError", message=r.error)
            el.text = f"{r.source}: expected {expected}\n{r.error}" if r.source else r.error
        elif not r.passed:
            actual = describe_rewards(r.actual)
            message = f"expected {expected}, got {actual}"
            el = ET.SubElement(case, "failure", type="WrongRewards", message=message)
            el.text = f"{r.source}: {message}" if r.source else message
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, "unicode") + "\n"


__all__ = ["examples_junit"]
