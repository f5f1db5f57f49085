"""`referral rules draft`: English sentences -> checked rule text, never a guess."""

from __future__ import annotations

import json
import re
import shlex
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result
from hypothesis import given, settings
from hypothesis import strategies as st

import dsl.draft
from compiler.draft import draft, load_context
from compiler.draft_model import answer_text
from dsl.codec import rule_to_json
from dsl.draft import build_lexicon, draft_rule
from dsl.draft.grammar import readings, terminal_regex
from dsl.draft.grounding import facts, ungrounded
from dsl.draft.words import REFEREE, REFERRER, normalize, stem
from dsl.errors import ReferralError
from dsl.model import Rule
from dsl.money import CURRENCY_EXPONENTS
from dsl.parser import parse_text
from dsl.program import load_program, program_files
from referral.cli.draft import draft_cmd
from settlement.demo import generate_records

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "rules"
DATA = Path(__file__).parent / "data"
RECORDS = DATA / "draft_records.jsonl"
CORPUS: list[dict[str, Any]] = yaml.safe_load((DATA / "draft_corpus.yaml").read_text("utf-8"))
PROGRAMS = {"rules": [RULES], "none": []}

SEED = "IF referrer is a paid user AND referred user subscribes THEN issue ₹500 reward"
EXPLICIT_SEED = (
    'IF referrer.plan = "paid" AND referee.subscribed = true THEN ISSUE ₹500 REWARD TO referrer'
)


def run(*args: str, **kwargs: Any) -> Result:
    return CliRunner().invoke(draft_cmd, list(args), **kwargs)


def model(rule: Rule) -> dict[str, Any]:
    """A compiled rule's meaning: its JSON model without id, description and source."""
    data = rule_to_json(rule, with_source=False)
    del data["id"], data["description"]
    return data


def compiled(text: str, program: list[Path], tmp_path: Path) -> Rule:
    """The one rule of ``text``, loaded with the program (as `rules check` would)."""
    rule_id = parse_text(text).rules[0].id
    path = tmp_path / "compiled.rule"
    path.write_text(text, encoding="utf-8")
    return load_program([*program_files(program), path]).program.rule(rule_id)


def program_args(entry: dict[str, Any]) -> list[str]:
    return ["--program", str(RULES)] if entry["program"] == "rules" else []


# ---------------------------------------------------------------- the corpus


def test_corpus_drafts_the_expected_rule_or_refuses_naming_words(tmp_path: Path,
                                                                  capsys: Any) -> None:
    expected = [e for e in CORPUS if "expect" in e]
    refusals = [e for e in CORPUS if "refuse" in e]
    exact, refused, wrong, named = 0, [], [], 0
    for entry in CORPUS:
        result = run(entry["sentence"], "--records", str(RECORDS), *program_args(entry))
        assert result.exit_code in (0, 1), (entry["sentence"], result.output)
        if result.exit_code == 1:
            # A refusal is the project's own error, never a crash.
            assert result.stderr.splitlines()[-1].startswith("error: no rule drafted: "), (
                entry["sentence"], result.output)
            assert result.stdout == ""
        program = PROGRAMS[entry["program"]]
        if "expect" in entry:
            if result.exit_code == 1:
                refused.append(entry["sentence"])
                continue
            want = compiled(f"RULE expected_rule\n{entry['expect']}", program, tmp_path)
            got = compiled(result.stdout, program, tmp_path)
            if model(got) == model(want):
                exact += 1
            else:
                wrong.append((entry["sentence"], result.stdout))
        else:
            if result.exit_code == 0:
                wrong.append((entry["sentence"], result.stdout))
                continue
            missing = [w for w in entry["refuse"] if w not in result.stderr]
            assert not missing, (entry["sentence"], missing, result.stderr)
            named += 1
    share = exact / len(expected)
    figure = (
        f"draft corpus: {exact}/{len(expected)} exact ({share:.0%}), {len(refused)} refused, "
        f"{len(wrong)} wrong; {named}/{len(refusals)} must-refuse sentences refused naming "
        "their words"
    )
    with capsys.disabled():
        print(f"\n{figure}")
    assert len(CORPUS) >= 80
    assert not wrong, wrong
    assert share >= 0.9, figure
    assert named == len(refusals)


def test_corpus_drafts_are_grounded_in_their_sentences() -> None:
    """The check a model's answer must pass holds for every builtin draft: it is sound."""
    contexts = {name: load_context(paths, RECORDS) for name, paths in PROGRAMS.items()}
    checked = 0
    for entry in CORPUS:
        context = contexts[entry["program"]]
        result = draft(entry["sentence"], context)
        if not result.ok:
            continue
        assert result.rule_text is not None and result.rule is not None
        written = parse_text(result.rule_text).rules[0]
        assert ungrounded(written, result.rule, result.sentence, context.lexicon) == [], (
            entry["sentence"])
        checked += 1
    assert checked >= 80


_WORDS = sorted({w for e in CORPUS for w in e["sentence"].split()})
_CONTEXT = load_context([RULES], RECORDS)


@st.composite
def _edited_sentences(draw: st.DrawFn) -> str:
    """Corpus sentences with words dropped, repeated or replaced, and word salads."""
    if draw(st.booleans()):
        return " ".join(draw(st.lists(st.sampled_from(_WORDS), max_size=25)))
    words = draw(st.sampled_from(CORPUS))["sentence"].split()
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(words) - 1))
        edit = draw(st.sampled_from(["drop", "insert", "replace"]))
        if edit == "drop" and len(words) > 1:
            del words[i]
        elif edit == "insert":
            words.insert(i, draw(st.sampled_from(_WORDS)))
        else:
            words[i] = draw(st.sampled_from(_WORDS))
    return " ".join(words)


@settings(max_examples=150)
@given(_edited_sentences())
def test_any_text_drafts_a_checked_grounded_rule_or_refuses(sentence: str) -> None:
    result = draft(sentence, _CONTEXT)
    if result.ok:
        assert result.rule_text is not None and result.rule is not None
        written = parse_text(result.rule_text).rules[0]
        assert ungrounded(written, result.rule, result.sentence, _CONTEXT.lexicon) == []
    else:
        assert result.rule_text is None or any(
            d.severity == "error" for d in result.diagnostics)
        assert result.unmapped or result.diagnostics


def test_empty_and_overlong_text_are_refused() -> None:
    assert draft("  ", _CONTEXT).diagnostics[0].message == "no sentence to draft"
    long = "Give the referrer ₹500 when the friend subscribes and is a student " * 40
    assert "longer than" in draft(long, _CONTEXT).diagnostics[0].message


# ---------------------------------------------------------------- acceptance


def test_seed_sentence_without_define_drafts_the_explicit_rule(tmp_path: Path) -> None:
    program = tmp_path / "program"
    program.mkdir()
    (program / "other.rule").write_text(
        'RULE welcome "India only"\n  IF referee.country = "IN"\n  THEN ISSUE ₹100 TO referee\n',
        encoding="utf-8")
    feed = tmp_path / "feed.jsonl"
    feed.write_text("".join(
        json.dumps({"referral_id": f"r{n}", "referrer": {"id": f"a{n}", "plan": plan},
                    "referee": {"id": f"b{n}", "subscribed": n % 2 == 0}}) + "\n"
        for n, plan in enumerate(["paid", "free", "paid", "free"])), encoding="utf-8")
    assert not load_program([program]).program.definitions
    result = run(SEED, "--program", str(program), "--records", str(feed))
    assert result.exit_code == 0, result.output
    got = compiled(result.stdout, [program], tmp_path)
    explicit = compiled(f"RULE explicit\n{EXPLICIT_SEED}\n", [program], tmp_path)
    docs = load_program([ROOT / "docs" / "seed_rule.rule"]).program.rule("seed_rule")
    assert model(got) == model(explicit) == model(docs)


def test_issue_sentences_now_draft(tmp_path: Path) -> None:
    for sentence in ("Give the referrer ₹500 when their friend subscribes within 30 days",
                     "IF referee subscribes THEN ISSUE ₹500 TO the referrer"):
        result = run(sentence, "--program", str(RULES))
        assert result.exit_code == 0, result.output
        compiled(result.stdout, [RULES], tmp_path)


def test_howto_drafts_are_what_the_command_prints(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/draft.md cannot go stale: each documented command prints its block."""
    howto = (ROOT / "docs" / "draft.md").read_text("utf-8")
    examples = re.findall(r"```sh\nreferral rules draft (-[^\n]+)\n```\n\n```\n(.*?)```", howto,
                          re.S)
    assert len(examples) >= 3
    sample = tmp_path / "sample.jsonl"
    sample.write_text("\n".join(generate_records(200, seed=7)) + "\n", encoding="utf-8")
    monkeypatch.chdir(ROOT)
    for command, shown in examples:
        args = [str(sample) if a == "sample.jsonl" else a for a in shlex.split(command)]
        result = run(*args)
        if result.exit_code == 0:
            assert result.stdout == shown, command
        else:
            assert result.stderr == shown, command


# ---------------------------------------------------------------- the command


def test_draft_text_output_is_rule_text_then_how_it_was_read(tmp_path: Path) -> None:
    result = run("Give the referrer ₹500 when their friend subscribes, held for 14 days",
                 "--program", str(RULES))
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(
        'RULE referrer_500_friend_subscribes_held "Give the referrer ₹500 when their friend '
        'subscribes, held for 14 days"\n'
        "  IF referred user subscribes\n"
        "  THEN ISSUE ₹500 REWARD TO referrer\n"
        "  HOLD 14 DAYS\n\n"
        "# understood (builtin):\n")
    assert '"their friend subscribes" -> referred user subscribes  [vocabulary]' in result.stdout
    assert '"₹500"' in result.stdout and "-> ₹500  [amount]" in result.stdout
    compiled(result.stdout, [RULES], tmp_path)  # the comments keep it a rule file


def test_draft_json_is_the_documented_object() -> None:
    result = run("Give both ₹100 when the friend subscribes", "--program", str(RULES), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert list(data) == ["rule_text", "model", "mapping", "unmapped", "diagnostics"]
    assert data["model"] == "builtin"
    assert data["unmapped"] == [] and data["diagnostics"] == []
    assert "AND ISSUE ₹100 REWARD TO referee" in data["rule_text"]
    assert {"words": "the friend subscribes", "became": "referred user subscribes",
            "source": "vocabulary"} in data["mapping"]
    assert {m["source"] for m in data["mapping"]} == {"keyword", "amount", "vocabulary"}


def test_draft_refusal_names_words_and_candidates_exit_1() -> None:
    result = run("Give the referrer ₹500 when the friend gets a paid plan", "--program", str(RULES))
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == (
        'error: no rule drafted: could not map "the friend gets a paid plan"')
    assert result.stderr.splitlines()[0] == (
        'unmapped: "the friend gets a paid plan" (close, but the words do not say all of it); '
        'closest: referrer.plan = "paid", referee.plan = "annual", referee.plan = "monthly"')


def test_draft_refusal_json_has_no_rule_text() -> None:
    result = run("Give the referrer 500 points when the friend subscribes",
                 "--program", str(RULES), "--json")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["rule_text"] is None
    assert data["unmapped"][0]["words"] == "500 points"
    assert data["unmapped"][0]["candidates"][0] == "₹500"


def test_draft_output_file_only_when_it_checks(tmp_path: Path) -> None:
    out = tmp_path / "new.rule"
    result = run("Give the referrer ₹500 when the friend subscribes", "--program", str(RULES),
                 "-o", str(out), "--id", "launch_bonus")
    assert result.exit_code == 0, result.output
    assert out.read_text("utf-8").startswith('RULE launch_bonus "Give the referrer')
    assert result.stdout.endswith(f"wrote {out}\n")
    refused = tmp_path / "refused.rule"
    result = run("Give the referrer ₹500 when the friend goes premium", "--program", str(RULES),
                 "-o", str(refused))
    assert result.exit_code == 1
    assert not refused.exists()


def test_draft_id_is_checked_with_the_program() -> None:
    result = run("Give the referrer ₹500 when the friend subscribes", "--program", str(RULES),
                 "--id", "paid_referrer_bonus")
    assert result.exit_code == 1
    assert '<draft>:1:1: error: duplicate rule id "paid_referrer_bonus"' in result.stderr
    assert run("Give ₹5 when the friend subscribes", "--id", "9lives").exit_code == 2


def test_draft_id_from_the_sentence_avoids_program_ids() -> None:
    context = load_context([RULES])
    taken = dsl.draft.rule_id_for("paid referrer bonus", context.lexicon.rule_ids)
    assert taken == "paid_referrer_bonus_2"


def test_draft_without_condition_or_reward_says_what_is_missing() -> None:
    result = run("Referees get 10% of their first payment, at most ₹200", "--program", str(RULES))
    assert result.exit_code == 1
    assert "error: no condition: say when it is paid" in result.stderr
    result = run("When the friend subscribes, held for 14 days", "--program", str(RULES))
    assert result.exit_code == 1
    assert "error: no reward" in result.stderr


def test_draft_with_a_broken_program_reports_the_program() -> None:
    with pytest.raises(ReferralError):
        load_context([DATA / "missing-program"])


def test_draft_two_readings_that_disagree_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    one = readings("Give the referrer ₹500 when the friend subscribes")
    two = readings("Give the referrer ₹600 when the friend subscribes")
    assert isinstance(one, list) and isinstance(two, list)
    monkeypatch.setattr(dsl.draft, "readings", lambda text: [one[0], two[0]])
    found = draft_rule("Give the referrer ₹500 when the friend subscribes", build_lexicon(
        None, [{"referee": {"subscribed": True}}]))
    assert found.rule is None
    assert found.problems[0].startswith("the sentence reads 2 ways")
    assert len(found.alternatives) == 2


# ---------------------------------------------------------------- the model backend


class _Stub(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 (the http.server API)
        server: Any = self.server
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        server.requests.append((self.path, body, self.headers.get("Authorization")))
        payload = json.dumps({"model": "stub-model", "choices": [
            {"message": {"role": "assistant", "content": server.answer}}]}).encode("utf-8")
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@pytest.fixture
def stub() -> Iterator[Any]:
    """A local OpenAI-compatible endpoint; set ``.answer`` to what it replies."""
    server: Any = HTTPServer(("127.0.0.1", 0), _Stub)
    server.answer, server.requests = "", []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.url = f"http://127.0.0.1:{server.server_port}"
    yield server
    server.shutdown()
    server.server_close()


SENTENCE = "Give the referrer ₹500 when the friend subscribes"


def test_model_valid_answer_is_accepted(stub: Any, tmp_path: Path) -> None:
    stub.answer = ("Here is the rule:\n```\nIF referred user subscribes\n"
                   "THEN ISSUE ₹500 REWARD TO referrer\n```\n")
    result = run(SENTENCE, "--program", str(RULES), "--records", str(RECORDS),
                 "--model", stub.url)
    assert result.exit_code == 0, result.output
    assert "THEN ISSUE ₹500 REWARD TO referrer" in result.stdout
    assert "# understood (stub-model):" in result.stdout
    got = compiled(result.stdout, [RULES], tmp_path)
    assert got.id == "referrer_500_friend_subscribes"
    ((path, body, _auth),) = stub.requests
    assert path == "/v1/chat/completions"
    system, user = body["messages"]
    assert user == {"role": "user", "content": SENTENCE}
    assert '- "referred user subscribes"' in system["content"]
    assert "- referee.first_payment (money (integer minor units))" in system["content"]
    assert "- referrer.plan (string: free, paid)" in system["content"]


def test_model_invalid_answer_is_refused_with_diagnostics(stub: Any) -> None:
    stub.answer = "IF the friend subscribes THEN GIVE ₹500"
    result = run(SENTENCE, "--program", str(RULES), "--model", stub.url)
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1].startswith("error: no rule drafted: ")
    assert "<model answer>:1:" in result.stderr and "error: unexpected" in result.stderr
    stub.answer = "IF referee was paid THEN ISSUE ₹500 REWARD TO referrer"
    result = run(SENTENCE, "--program", str(RULES), "--model", stub.url)
    assert result.exit_code == 1
    assert 'error: phrase "referee was paid" is not defined' in result.stderr


@pytest.mark.parametrize("answer, problem", [
    ("IF referred user subscribes THEN ISSUE ₹500 REWARD TO referrer "
     "AND ISSUE ₹500 REWARD TO referee",
     "the amount ₹500 is used 2 times but written 1 times in the sentence"),
    ("IF referred user subscribes THEN ISSUE ₹500 REWARD TO referrer "
     "AND ISSUE ₹100 REWARD TO referrer",
     "the amount ₹100 is used 1 times but not written in the sentence"),
    ("IF referred user subscribes THEN ISSUE ₹500 REWARD TO referrer HOLD 30 DAYS",
     "the number 30 is not in the sentence"),
    ("IF referred user subscribes THEN ISSUE ₹500 REWARD TO referrer "
     "REVERSE IF referee.refunded = true",
     "REVERSE IF: the sentence does not say the reward is reversed"),
    ('IF referred user subscribes AND referee.country = "DE" THEN ISSUE ₹500 REWARD TO referrer',
     'the value "DE" is not a word of the sentence'),
    ("IF referred user subscribes AND referee.vip THEN ISSUE ₹500 REWARD TO referrer",
     "the field referee.vip is in neither the program nor the records"),
])
def test_model_answer_saying_more_than_the_sentence_is_refused(
    stub: Any, answer: str, problem: str
) -> None:
    stub.answer = answer
    result = run(SENTENCE, "--program", str(RULES), "--records", str(RECORDS),
                 "--model", stub.url)
    assert result.exit_code == 1
    assert f"error: not in the sentence: {problem}" in result.stderr, result.stderr


def test_model_answer_with_more_than_one_rule_is_refused(stub: Any) -> None:
    stub.answer = (
        "RULE a IF referred user subscribes THEN ISSUE ₹500 REWARD TO referrer\n"
        "RULE b IF referred user subscribes THEN ISSUE ₹500 REWARD TO referee\n")
    result = run(SENTENCE, "--program", str(RULES), "--model", stub.url, "--json")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["rule_text"] is None and data["model"] == "stub-model"
    assert data["diagnostics"] == [
        "error: the answer holds 2 rules, 0 definitions and 0 examples; "
        "exactly one rule was asked for"]


def test_model_from_the_environment(stub: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    stub.answer = "IF referred user subscribes THEN ISSUE ₹500 REWARD TO referrer"
    monkeypatch.setenv("REFERRAL_DRAFT_API_KEY", "k")
    result = run(SENTENCE, "--program", str(RULES), "--json",
                 env={"REFERRAL_DRAFT_MODEL": stub.url + "/v1"})
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["model"] == "stub-model"
    assert stub.requests[0][0] == "/v1/chat/completions"
    assert stub.requests[0][2] == "Bearer k"


def test_model_unreachable_is_a_draft_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = run(SENTENCE, "--model", f"http://127.0.0.1:{port}")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1].startswith("error: ")
    assert "unreachable" in result.stderr.splitlines()[-1]


def test_answer_text_takes_the_fenced_block() -> None:
    assert answer_text("```rule\nIF a.b THEN ISSUE ₹1\n```\nthanks") == "IF a.b THEN ISSUE ₹1\n"
    assert answer_text("  IF a.b THEN ISSUE ₹1  ") == "IF a.b THEN ISSUE ₹1\n"


# ---------------------------------------------------------------- the parts


@pytest.mark.parametrize("word, stemmed", [
    ("subscribes", "subscrib"), ("subscribed", "subscrib"), ("subscribing", "subscrib"),
    ("verifies", "verifi"), ("verified", "verifi"), ("refunds", "refund"), ("paid", "paid"),
    ("payments", "payment"), ("class", "class"),
])
def test_stem(word: str, stemmed: str) -> None:
    assert stem(word) == stemmed


def test_close_variants_normalise_alike() -> None:
    def norms(text: str) -> list[str]:
        return [w.norm for w in normalize(text) if w.norm not in {"a", "the"}]

    assert norms("a friend subscribes") == norms("referred user subscribes") == [
        REFEREE, "subscrib"]
    assert norms("their friend") == [REFEREE]
    assert norms("the referring user") == norms("advocate") == [REFERRER]


def test_lexicon_learns_paths_and_types_from_records() -> None:
    lexicon = build_lexicon(None, [
        {"referral_id": "r1", "referral": {"created_at": "2026-01-02"},
         "referrer": {"id": "u1", "plan": "paid"},
         "referee": {"id": "u2", "subscribed": True, "first_payment": 49900,
                     "card_payments": 3, "country": "IN", "tags": ["x"]}},
        {"referral_id": "r2", "referrer": {"id": "u3", "plan": "free"},
         "referee": {"id": "u4", "subscribed": False, "country": None}},
    ])
    types = {path: (f.type, f.values) for path, f in lexicon.fields.items()}
    assert types == {
        "referee.card_payments": ("number", ()),
        "referee.country": ("string", ("IN",)),
        "referee.first_payment": ("money", ()),
        "referee.id": ("string", ()),
        "referee.subscribed": ("boolean", ()),
        "referee.tags": ("list", ()),
        "referral.created_at": ("date", ()),
        "referrer.id": ("string", ()),
        "referrer.plan": ("string", ("free", "paid")),
    }
    assert lexicon.referral_date is not None


def test_lexicon_takes_types_and_phrases_from_the_program() -> None:
    lexicon = build_lexicon(load_program([RULES]).program)
    assert lexicon.fields["referee.first_payment"].type == "money"
    assert lexicon.fields["referee.subscribed_at"].type == "date"
    assert lexicon.fields["referrer.plan"].values == ("free", "paid")
    assert "referred user subscribes" in {p.phrase for p in lexicon.phrases}
    assert lexicon.currencies == {"INR"}


def test_grammar_money_knows_every_currency() -> None:
    money = terminal_regex("MONEY")
    for code in CURRENCY_EXPONENTS:
        assert money.fullmatch(f"{code} 500") and money.fullmatch(f"500 {code}"), code


def test_facts_read_amounts_people_and_numbers() -> None:
    found = facts("Give both ₹100 and the friend 10% within two weeks, held for 7 days")
    assert sum(found.amounts.values()) == 1 and found.shared
    assert found.roles == {"referrer", "referee"}
    assert {14, 7} <= found.numbers and found.holds and not found.reverses
