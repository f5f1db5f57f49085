"""The fresh-machine set-up: scripts/bootstrap.sh and the Makefile's .venv repair.

Nothing is really uninstalled: each test runs the script with PATH set to a
directory of stand-ins (``id`` saying root or not, an ``apt-get`` that logs its
arguments, a ``python3`` without ensurepip), and real venvs go into tmp_path.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BOOTSTRAP = ROOT / "scripts" / "bootstrap.sh"
BASH = shutil.which("bash") or "/bin/bash"
GRAPHVIZ = "  graphviz: its dot draws the SVG/PNG diagrams and the rule catalog"


def _tool(bin_dir: Path, name: str, script: str) -> None:
    path = bin_dir / name
    path.write_text(f"#!{BASH}\n{script}\n", encoding="utf-8")
    path.chmod(0o755)


@pytest.fixture
def machine(tmp_path: Path) -> Path:
    """A PATH directory holding only stand-ins; tools are added per test."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    return bin_dir


@pytest.fixture
def good_venv(tmp_path: Path) -> Path:
    """A directory whose bin/python imports pip (a stand-in: it succeeds at anything)."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    _tool(venv / "bin", "python", "exit 0")
    return venv


def _user(bin_dir: Path, uid: int) -> None:
    _tool(bin_dir, "id", f"echo {uid}")


def _apt(bin_dir: Path, log: Path) -> None:
    """apt-get that logs its arguments and, on install, provides graphviz's dot."""
    _tool(bin_dir, "apt-get", f'echo "$*" >> {log}\n'
          f'case "$*" in *graphviz*) printf "#!{BASH}\\n" > {bin_dir}/dot; '
          f"{shutil.which('chmod')} +x {bin_dir}/dot ;; esac")


def _bootstrap(bin_dir: Path, venv: Path, *args: str, python: str = "python3"):
    env = {"PATH": str(bin_dir), "VENV": str(venv), "PYTHON": python}
    return subprocess.run([BASH, str(BOOTSTRAP), *args], env=env, capture_output=True,
                          text=True, check=False)


def test_dot_missing_not_root_stops_with_the_command(machine, good_venv, tmp_path):
    _user(machine, 1000)
    _apt(machine, tmp_path / "apt.log")
    result = _bootstrap(machine, good_venv, "system", "dot")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        "bootstrap: missing system packages:\n"
        f"{GRAPHVIZ}\n"
        "not root, so not installing them; run this, then make again:\n"
        "  sudo apt-get update && sudo apt-get install -y graphviz\n"
    )
    assert not (tmp_path / "apt.log").exists()


def test_everything_missing_for_make_test_is_one_command(machine, good_venv, tmp_path):
    _user(machine, 1000)
    _apt(machine, tmp_path / "apt.log")
    result = _bootstrap(machine, good_venv, "system", "dot", "chromium")
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        "  sudo apt-get update && sudo apt-get install -y graphviz chromium chromium-driver")


def test_no_apt_get_stops_naming_the_packages(machine, good_venv):
    _user(machine, 0)
    result = _bootstrap(machine, good_venv, "system", "dot")
    assert result.returncode == 1
    assert result.stderr == (
        "bootstrap: missing system packages:\n"
        f"{GRAPHVIZ}\n"
        "no apt-get here: install them with this system's package manager,\n"
        "then run make again\n"
    )


def test_root_installs_what_is_missing_and_says_why(machine, good_venv, tmp_path):
    _user(machine, 0)
    log = tmp_path / "apt.log"
    _apt(machine, log)
    _tool(machine, "chromium", "exit 0")
    result = _bootstrap(machine, good_venv, "system", "dot", "chromium")
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == (
        "bootstrap: installing graphviz: its dot draws the SVG/PNG diagrams and the rule catalog\n"
        "bootstrap: installing chromium-driver: the browser test drives Chromium through it\n"
        "bootstrap: apt-get update && apt-get install -y graphviz chromium-driver\n"
    )
    assert log.read_text(encoding="utf-8").splitlines() == [
        "update -qq", "install -y -qq graphviz chromium-driver"]
    again = _bootstrap(machine, good_venv, "system", "dot")
    assert (again.returncode, again.stdout, again.stderr) == (0, "", "")


def test_nothing_missing_says_nothing(machine, good_venv):
    _user(machine, 1000)
    for name in ("dot", "chromium", "chromedriver"):
        _tool(machine, name, "exit 0")
    result = _bootstrap(machine, good_venv, "system", "dot", "chromium")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_python_without_ensurepip_needs_python3_venv(machine, tmp_path):
    """Debian's python3 without python3-venv: `python3 -m venv` would leave a .venv sans pip."""
    _user(machine, 1000)
    _apt(machine, tmp_path / "apt.log")
    _tool(machine, "python3",
          f'case "$*" in *ensurepip*) exit 1 ;; esac\nexec {sys.executable} "$@"')
    venv = tmp_path / "not-yet"
    result = _bootstrap(machine, venv, "system")
    assert result.returncode == 1
    assert result.stderr == (
        "bootstrap: missing system packages:\n"
        f"  python3-venv: python3 -m venv needs it to put pip into {venv}\n"
        "not root, so not installing them; run this, then make again:\n"
        "  sudo apt-get update && sudo apt-get install -y python3-venv\n"
    )


def test_old_python_stops_before_making_the_venv(machine, tmp_path):
    _tool(machine, "python3", 'case "$*" in *version_info\\ \\<*) exit 1 ;; '
          '*version_info*) echo 3.9 ;; esac')
    venv = tmp_path / "venv"
    result = _bootstrap(machine, venv, "venv")
    assert result.returncode == 1
    assert result.stderr == ("bootstrap: Python >= 3.11 is needed; python3 is 3.9.\n"
                             "Install a newer one, then run make PYTHON=python3.11 (or newer)\n")
    assert not venv.exists()


def test_not_a_venv_is_never_removed(machine, tmp_path):
    precious = tmp_path / "precious"
    precious.mkdir()
    result = _bootstrap(machine, precious, "venv", python=sys.executable)
    assert result.returncode == 1
    assert "is not a virtual environment" in result.stderr
    assert precious.is_dir()


def _make(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MAKEFLAGS": ""}
    return subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), *args], env=env,
                          capture_output=True, text=True, check=False)


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_rebuilds_a_venv_without_pip(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    (venv / ".installed").touch()  # a stamp newer than pyproject.toml does not hide it
    plan = _make("-n", f"VENV={venv}", f"PYTHON={sys.executable}", str(venv / ".installed"))
    assert f"{venv}/bin/python -m pip install --quiet -e '.[test]'" in plan.stdout

    result = _make("venv", f"VENV={venv}", f"PYTHON={sys.executable}")
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        f"bootstrap: rebuilding {venv}: its python cannot import pip (a set-up that stopped "
        "half-way?)\n")
    subprocess.run([str(venv / "bin" / "python"), "-c", "import pip"], check=True)

    (venv / ".installed").touch()
    plan = _make("-n", f"VENV={venv}", f"PYTHON={sys.executable}", str(venv / ".installed"))
    assert "pip install" not in plan.stdout
    again = _make("venv", f"VENV={venv}", f"PYTHON={sys.executable}")
    assert (again.returncode, again.stdout) == (0, "")


def test_demo_says_what_it_skips_without_dot(machine, tmp_path):
    """`make run` without Graphviz: DOT diagrams, no catalog, and a line saying why."""
    calls = tmp_path / "calls"
    _tool(machine, "referral", f'echo "$*" >> {calls}')
    for name in ("dirname", "mkdir", "head"):
        os.symlink(shutil.which(name) or f"/usr/bin/{name}", machine / name)
    os.symlink(sys.executable, machine / "python3")
    env = {"PATH": str(machine), "DEMO_OUT": str(tmp_path / "demo")}
    result = subprocess.run([BASH, str(ROOT / "scripts" / "demo.sh")], env=env,
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert ("== skipped: SVG diagrams and the rule catalog, because Graphviz's dot is not "
            "installed (apt-get install graphviz); writing DOT diagrams instead") in (
        result.stdout.splitlines())
    made = calls.read_text(encoding="utf-8").splitlines()
    assert f"rules render rules/ --format dot -o {tmp_path / 'demo'}/diagrams" in made
    assert not any(c.startswith("rules catalog") for c in made)
