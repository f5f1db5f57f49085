"""Rule evaluation: our compiled program vs hand-written Python vs rule-engine / business-rules.

Two programs: the example in ``rules/`` (contexts from ``settlement.demo``) and
a generated 20-rule program (``bench.generated``).  Before any timing, every
engine's decisions (rewards as (rule, role, minor units) in evaluation order,
and the rules whose REVERSE IF holds) are checked equal on a sample.
"""

from __future__ import annotations

import itertools
import json
import tempfile
from collections.abc import Callable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from bench import generated, hand_rules, peers
from bench.common import ROOT, median, timed
from dsl.errors import EvaluationError
from dsl.evaluate import CompiledProgram, compile_program
from dsl.program import load_program
from settlement.demo import generate_records

POOL = 100_000  # distinct contexts; larger runs cycle through them
CHECK = 5_000


def our_decision(compiled: CompiledProgram, ctx: Mapping[str, Any]) -> peers.Decision:
    ev = compiled.evaluate(ctx)
    return (tuple((r.rule_id, r.role, r.amount.amount) for r in ev.rewards),
            tuple(o.rule_id for o in ev.outcomes if o.reverse))


def demo_contexts(n: int, compiled: CompiledProgram) -> list[dict[str, Any]]:
    """Parsed demo records our evaluator accepts (malformed and bad-typed ones are skipped)."""
    pool: list[dict[str, Any]] = []
    for line in generate_records(n + n // 50 + 10, seed=1):
        try:
            data = json.loads(line, parse_float=Decimal)
        except ValueError:
            continue
        if not isinstance(data, dict):
            continue
        try:
            compiled.evaluate(data)
        except EvaluationError:
            continue
        pool.append(data)
        if len(pool) == n:
            break
    return pool


def run_loop(fn: Callable[[Any], Any], pool: list[Any], total: int) -> float:
    """Seconds for ``total`` calls of fn, cycling through pool."""
    rounds, rest = divmod(total, len(pool))

    def go() -> None:
        for _ in range(rounds):
            for ctx in pool:
                fn(ctx)
        for ctx in itertools.islice(pool, rest):
            fn(ctx)

    return timed(go)


def compare(name: str, engines: dict[str, Callable[[Any], Any]], decide: dict[str, Callable],
            pool: list[Any], total: int, peer_total: int, reps: int,
            log: Callable[[str], None]) -> dict[str, Any]:
    sample = pool[:CHECK]
    reference = [decide["hand"](c) for c in sample]
    for engine, fn in decide.items():
        got = [fn(c) for c in sample]
        bad = sum(1 for a, b in zip(got, reference, strict=True) if a != b)
        if bad:
            raise AssertionError(f"{name}: {engine} differs from hand-written on {bad} contexts")
    rewarded = sum(1 for d in reference if d[0])
    log(f"{name}: decisions agree on {len(sample)} contexts ({rewarded} rewarded)")
    times: dict[str, list[float]] = {k: [] for k in engines}
    peer_pool = pool[:peer_total]
    small: dict[str, list[float]] = {k: [] for k in engines}
    for rep in range(reps):
        for engine in ("ours", "hand"):
            times[engine].append(run_loop(engines[engine], pool, total))
        for engine, fn in engines.items():  # every engine on the peer sample
            small[engine].append(run_loop(fn, peer_pool, len(peer_pool)))
        log(f"{name} rep {rep + 1}: ours {times['ours'][-1]:.2f}s, hand {times['hand'][-1]:.2f}s"
            f" over {total} contexts; sample of {len(peer_pool)}: "
            + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in small.items()))
    med = {k: median(v) for k, v in times.items() if v}
    med_small = {k: median(v) for k, v in small.items()}
    out: dict[str, Any] = {
        "contexts": total,
        "distinct_contexts": len(pool),
        "peer_contexts": len(peer_pool),
        "ours_s": med["ours"],
        "hand_s": med["hand"],
        "ours_us_per_context": med["ours"] / total * 1e6,
        "hand_us_per_context": med["hand"] / total * 1e6,
        "ours_vs_hand": med["ours"] / med["hand"],
        "sample": {k: v / len(peer_pool) * 1e6 for k, v in med_small.items()},
    }
    for peer in ("rule-engine", "business-rules"):
        if peer in med_small:
            out[f"{peer}_vs_ours"] = med_small[peer] / med_small["ours"]
            out[f"{peer}_vs_hand"] = med_small[peer] / med_small["hand"]
    return out


def business_rules_status() -> str | None:
    """None when business-rules imports on this Python, else why not."""
    try:
        import business_rules.engine  # noqa: F401
        import business_rules.variables  # noqa: F401
    except Exception as e:  # noqa: BLE001 - any import failure is the answer
        return f"{type(e).__name__}: {e}"
    return None


def bench_evaluation(total: int, peer_total: int, reps: int,
                     log: Callable[[str], None]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    br_problem = business_rules_status()
    results["business_rules_import"] = br_problem or "ok"

    # -- the example program
    program = load_program([ROOT / "rules"]).program
    compiled = compile_program(program, default_currency="INR")
    pool = demo_contexts(min(total, POOL), compiled)
    re_rules = peers.rule_engine_rules(program, peers.RULE_ENGINE_EXAMPLE)
    engines: dict[str, Callable[[Any], Any]] = {
        "ours": compiled.evaluate,
        "hand": hand_rules.evaluate,
        "rule-engine": lambda c: peers.decide(re_rules, c),
    }
    decide: dict[str, Callable] = {
        "hand": hand_rules.evaluate,
        "ours": lambda c: our_decision(compiled, c),
        "rule-engine": engines["rule-engine"],
    }
    if br_problem is None:
        br = peers.business_rules_decider(program, peers.example_variables(),
                                          peers.BUSINESS_RULES_EXAMPLE)
        engines["business-rules"] = decide["business-rules"] = br
    results["example"] = compare("rules/", engines, decide, pool, total, peer_total, reps, log)

    # -- the generated 20-rule program
    spec = generated.make_spec(20)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "generated.rule"
        path.write_text(generated.dsl_source(spec), encoding="utf-8")
        gen_program = load_program([path]).program
    gen = compile_program(gen_program, default_currency="INR")
    hand = generated.python_function(spec)
    gpool = list(generated.contexts(min(total, POOL)))
    g_re = peers.rule_engine_rules(gen_program, generated.rule_engine_texts(spec))
    engines = {"ours": gen.evaluate, "hand": hand,
               "rule-engine": lambda c: peers.decide(g_re, c)}
    decide = {"hand": hand, "ours": lambda c: our_decision(gen, c),
              "rule-engine": engines["rule-engine"]}
    if br_problem is None:
        gbr = peers.business_rules_decider(gen_program, generated.business_rules_variables(spec),
                                           generated.business_rules_conditions(spec))
        engines["business-rules"] = decide["business-rules"] = gbr
    results["generated"] = compare("generated 20 rules", engines, decide, gpool, total,
                                   peer_total, reps, log)
    return results
