"""The pre-commit hook: its manifest, and `referral rules precommit` on good and bad files."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from pre_commit.clientlib import load_manifest

from compiler.precommit import precommit, program_roots
from dsl.errors import ReferralError
from referral.cli import main

ROOT = Path(__file__).parent.parent
RULES_DIR = ROOT / "rules"
MANIFEST = ROOT / ".pre-commit-hooks.yaml"
# A rule in a subdirectory that uses phrases of rules/vocabulary.rule.
PROMO = ('RULE spring_promo "Paid referrers earn ₹50 more in spring"\n  PRIORITY 1\n'
         "  IF referrer is a paid user\n  AND referred user subscribes\n"
         "  AND referral.created_at >= 2026-03-01\n  THEN ISSUE ₹50 REWARD TO referrer\n")


def _hooks() -> dict[str, dict]:
    return {h["id"]: h for h in yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))}


def _hook() -> dict:
    return _hooks()["referral-rules-check"]


def test_manifest_is_valid_for_pre_commit():
    fmt, check = load_manifest(str(MANIFEST))  # pre-commit's own schema check
    assert (fmt["id"], check["id"]) == ("referral-rules-fmt", "referral-rules-check")
    assert fmt["language"] == check["language"] == "python"
    # The formatter gets the changed files; the check gets none and always runs, so a
    # deleted file that others depend on is seen through the programs left behind.
    assert fmt["pass_filenames"] is True and fmt["always_run"] is False
    assert check["pass_filenames"] is False and check["always_run"] is True
    files = re.compile(fmt["files"])
    assert files.search("rules/paid_referrer.rule")
    assert not files.search("rules/README.md") and not files.search("x.rule.bak")


def test_entries_are_the_projects_console_script():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    entries = {hook_id: h["entry"].split() for hook_id, h in _hooks().items()}
    assert entries == {"referral-rules-fmt": ["referral", "rules", "fmt"],
                       "referral-rules-check": ["referral", "rules", "precommit"]}
    assert "referral" in scripts


def test_version_is_tagged_and_in_the_changelog():
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert (ROOT / "CHANGELOG.md").read_text(encoding="utf-8").count(f"## {version}\n") == 1
    workflow = yaml.safe_load((ROOT / "docs" / "ci" / "rules.yml").read_text(encoding="utf-8"))
    job = workflow["jobs"]["rules"]
    assert job["env"]["REFERRAL_CLI"] == f"git+https://github.com/OWNER/REPOSITORY@v{version}"
    installs = [line.split() for step in job["steps"] for line in step.get("run", "").splitlines()
                if "pip install" in line]
    assert installs == [["python", "-m", "pip", "install", "--quiet", '"$REFERRAL_CLI"']]
    assert f"rev: v{version}" in MANIFEST.read_text(encoding="utf-8")


def _entry(*files: str):
    _, *args = _hook()["entry"].split()
    return CliRunner().invoke(main, [*args, *files])


def test_good_files_pass():
    # paid_referrer.rule uses phrases DEFINEd in vocabulary.rule: the whole program is loaded.
    result = _entry(str(RULES_DIR / "paid_referrer.rule"), str(RULES_DIR / "tiers.rule"))
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{RULES_DIR}: 5 rules, 14/14 examples passed\n"
    assert result.stderr == ""


def _copy_rules(tmp_path: Path) -> Path:
    program = tmp_path / "rules"
    shutil.copytree(RULES_DIR, program)
    return program


def test_syntax_error_fails_with_position(tmp_path):
    program = _copy_rules(tmp_path)
    bad = program / "bad.rule"
    bad.write_text("RULE a IF x.y = 1 ISSUE ₹5\n", encoding="utf-8")
    result = _entry(str(bad))
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"{bad}:1:19: error: unexpected 'ISSUE', expected one of: AND, OR, THEN\n")


def test_unformatted_file_and_failing_example_fail(tmp_path):
    program = _copy_rules(tmp_path)
    bad = program / "x.rule"
    bad.write_text('RULE  x IF a.b THEN ISSUE ₹5 TO referee\n'
                   'EXAMPLE "e" GIVEN a.b = true EXPECT NOTHING\n', encoding="utf-8")
    result = _entry(str(bad))
    assert result.exit_code == 1
    assert result.stdout == f"{program}: 6 rules, 14/15 examples passed\n"
    assert result.stderr.splitlines() == [
        f"{bad}: would reformat (run `referral rules fmt {bad}`)",
        f'{bad}:2:1: error: example "e" failed: expected NOTHING, got ISSUE ₹5 TO referee',
    ]
    # Only the files handed over are format-checked: the unchanged ones stay quiet.
    other = _entry(str(program / "tiers.rule"))
    assert "would reformat" not in other.stderr


def test_program_option_groups_subdirectories(tmp_path):
    top = tmp_path / "rules"
    (top / "sub").mkdir(parents=True)
    a, b, c = top / "a.rule", top / "sub" / "b.rule", tmp_path / "other" / "c.rule"
    assert program_roots([b, c, a], [top]) == {c.parent: [c], top: [b, a]}
    assert program_roots([b], [top, top / "sub"]) == {top / "sub": [b]}
    # By default a file belongs to the top of its chain of directories holding rules.
    assert program_roots([b, a]) == {top: [a], top / "sub": [b]}  # no files there yet
    for f in (a, b):
        f.write_text("", encoding="utf-8")
    assert program_roots([b, a]) == {top: [b, a]}


def test_phrase_defined_in_a_parent_program(tmp_path):
    top = tmp_path / "rules"
    (top / "sub").mkdir(parents=True)
    (top / "vocab.rule").write_text('DEFINE "paid" AS referrer.plan = "paid"\n', encoding="utf-8")
    rule = top / "sub" / "r.rule"
    rule.write_text('RULE r "r"\n  IF paid\n  THEN ISSUE ₹5 REWARD TO referrer\n',
                    encoding="utf-8")
    assert not precommit([rule], [top / "sub"]).ok  # sub/ alone does not define "paid"
    for programs in ([top], []):  # rules/sub/ passes when `rules check rules/` does
        result = precommit([rule], programs)
        assert result.ok, result.lines
        assert result.lines == [(f"{top}: 1 rules, 0/0 examples passed", False)]


def test_without_files_every_program_of_the_repository(tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(RULES_DIR, repo / "rules")
    (repo / "rules" / "promo").mkdir()
    (repo / "rules" / "promo" / "p.rule").write_text(PROMO, encoding="utf-8")
    (repo / "docs").mkdir()
    shutil.copy(ROOT / "docs" / "seed_rule.rule", repo / "docs")
    (repo / ".hidden").mkdir()
    (repo / ".hidden" / "junk.rule").write_text("RULE\n", encoding="utf-8")  # not git: skipped
    result = precommit([], directory=repo)
    assert result.ok, result.lines
    assert result.lines == [(f"{repo / 'docs'}: 1 rules, 0/0 examples passed", False),
                            (f"{repo / 'rules'}: 6 rules, 14/14 examples passed", False)]
    (repo / "rules" / "vocabulary.rule").unlink()
    gone = precommit([], directory=repo)
    assert not gone.ok
    undefined = [line for line, _ in gone.lines if "is not defined" in line]
    assert len(undefined) == 9  # the first unknown phrase of each condition, in 5 files
    assert (f"{repo / 'rules' / 'promo' / 'p.rule'}:3:6: error: "
            'phrase "referrer is a paid user" is not defined') in undefined
    assert gone.lines[0] == (f"{repo / 'docs'}: 1 rules, 0/0 examples passed", False)


def test_programs_from_pyproject(tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(RULES_DIR, repo / "rules")
    shutil.copytree(RULES_DIR, repo / "more")
    (repo / "pyproject.toml").write_text('[tool.referral]\nprograms = ["rules/"]\n',
                                         encoding="utf-8")
    assert precommit([], directory=repo).lines == [
        (f"{repo / 'rules'}: 5 rules, 14/14 examples passed", False)]
    (repo / "pyproject.toml").write_text('[tool.referral]\nprograms = ["nope/"]\n',
                                         encoding="utf-8")
    with pytest.raises(ReferralError, match=r"programs: no such directory: nope/"):
        precommit([], directory=repo)


def test_entry_runs_as_a_process(tmp_path):
    program = _copy_rules(tmp_path)
    _, *args = _hook()["entry"].split()
    ok = subprocess.run([sys.executable, "-m", "referral", *args, str(program / "tiers.rule")],
                        capture_output=True, text=True, check=False)
    assert (ok.returncode, ok.stdout) == (0, f"{program}: 5 rules, 14/14 examples passed\n")
    (program / "tiers.rule").write_text("RULE\n", encoding="utf-8")
    bad = subprocess.run([sys.executable, "-m", "referral", *args, str(program / "tiers.rule")],
                         capture_output=True, text=True, check=False)
    assert bad.returncode == 1
    assert bad.stderr.startswith(f"{program / 'tiers.rule'}:")


# ---------------------------------------------------------------- pre-commit itself, in a git repo

def _local_config() -> str:
    """The manifest's hooks as a `repo: local` config: the same ids, entries, file
    patterns and pass_filenames/always_run, with `language: unsupported` (the console
    script on PATH) instead of `python`, for which pre-commit would build a virtualenv
    from the network."""
    hooks = [{**h, "language": "unsupported"} for h in _hooks().values()]
    return yaml.safe_dump({"repos": [{"repo": "local", "hooks": hooks}]}, sort_keys=False)


@pytest.fixture
def repo(tmp_path) -> tuple[Path, dict[str, str]]:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    repo = tmp_path / "repo"
    shutil.copytree(RULES_DIR, repo / "rules")
    (repo / "rules" / "promo").mkdir()
    (repo / "rules" / "promo" / "spring.rule").write_text(PROMO, encoding="utf-8")
    (repo / ".pre-commit-config.yaml").write_text(_local_config(), encoding="utf-8")
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
           "PRE_COMMIT_HOME": str(tmp_path / "cache"), "GIT_CONFIG_GLOBAL": os.devnull,
           "GIT_CONFIG_NOSYSTEM": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    _git(repo, env, "init", "-q", "-b", "main")
    done = subprocess.run([sys.executable, "-m", "pre_commit", "install"], cwd=repo, env=env,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    _git(repo, env, "add", "-A")
    first = _commit(repo, env, "rules")
    assert first.returncode == 0, first.stdout + first.stderr
    return repo, env


def _git(repo: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=repo, env=env, capture_output=True, text=True,
                          check=True)


def _commit(repo: Path, env: dict[str, str], message: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "commit", "-q", "-m", message], cwd=repo, env=env,
                          capture_output=True, text=True, check=False)


def test_precommit_config_from_the_manifest_is_valid():
    from pre_commit.clientlib import load_config

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / ".pre-commit-config.yaml"
        path.write_text(_local_config(), encoding="utf-8")
        (local,) = load_config(str(path))["repos"]
    assert [h["id"] for h in local["hooks"]] == ["referral-rules-fmt", "referral-rules-check"]


@pytest.mark.slow
def test_hook_blocks_deleting_a_file_others_depend_on(repo):
    path, env = repo
    _git(path, env, "rm", "-q", "rules/vocabulary.rule")
    blocked = _commit(path, env, "remove the vocabulary")
    assert blocked.returncode == 1
    output = blocked.stdout + blocked.stderr
    assert "referral rules (check, test)" in output and "Failed" in output
    assert ('rules/promo/spring.rule:3:6: error: phrase "referrer is a paid user" is not '
            "defined") in output
    assert _git(path, env, "log", "--format=%s").stdout == "rules\n"  # nothing committed
    _git(path, env, "reset", "-q", "HEAD", "rules/vocabulary.rule")
    _git(path, env, "checkout", "rules/vocabulary.rule")
    (path / "rules" / "promo" / "notes.txt").write_text("not a rule\n", encoding="utf-8")
    _git(path, env, "add", "rules/promo/notes.txt")
    assert _commit(path, env, "notes").returncode == 0  # no .rule file changed: still checked


@pytest.mark.slow
def test_hook_rewrites_a_badly_formatted_rule_then_passes(repo):
    path, env = repo
    messy = path / "rules" / "promo" / "summer.rule"
    messy.write_text("rule summer_promo if referrer is a paid user and referral.created_at "
                     ">= 2026-06-01 then issue ₹20\n", encoding="utf-8")
    _git(path, env, "add", "rules/promo/summer.rule")
    once = _commit(path, env, "summer")
    assert once.returncode == 1
    output = once.stdout + once.stderr
    assert "files were modified by this hook" in output
    assert "reformatted rules/promo/summer.rule" in output
    assert messy.read_text(encoding="utf-8") == (
        "RULE summer_promo\n  IF referrer is a paid user\n  AND referral.created_at >= 2026-06-01\n"
        "  THEN ISSUE ₹20 REWARD TO referrer\n")
    _git(path, env, "add", "rules/promo/summer.rule")
    twice = _commit(path, env, "summer")
    assert twice.returncode == 0, twice.stdout + twice.stderr
    assert _git(path, env, "log", "--format=%s").stdout == "summer\nrules\n"


def test_every_package_is_in_the_distribution():
    """pre-commit (and docs/ci/rules.yml) install the CLI with a plain `pip install`, which
    ships only the packages pyproject.toml lists: an unlisted one breaks the hooks."""
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
                 ["packages"])
    found = {str(p.parent.relative_to(ROOT)).replace("/", ".")
             for top in ("grammar", "dsl", "compiler", "settlement", "referral")
             for p in (ROOT / top).rglob("__init__.py")}
    assert found <= listed, sorted(found - listed)
