#!/usr/bin/env bash
# The set-up `make` runs before anything else, so that `make run` and `make test` are all a
# newcomer types on Debian/Ubuntu.
#
#   bootstrap.sh system [dot] [chromium]   install the missing system packages that these need,
#                                          and python3-venv when .venv is still to be made
#   bootstrap.sh venv                      make $VENV, or rebuild it when its python cannot
#                                          import pip (a first try that stopped half-way)
#
# As root with apt-get it installs what is missing and says what and why; otherwise it stops
# at once (exit 1) with the exact command to run.  Every tool is looked up on PATH (id,
# apt-get, dot, ...) and $PYTHON / $VENV come from make, so tests/test_bootstrap.py can play
# a machine without dot, without root or with a broken .venv.
set -euo pipefail

PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"

say() { echo "bootstrap: $*"; }
stop() { echo "bootstrap: $1" >&2; shift; for line in "$@"; do echo "$line" >&2; done; exit 1; }

venv_works() { "$VENV/bin/python" -c 'import pip' >/dev/null 2>&1; }

python_version() { "$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])'; }

# The Debian package that gives $PYTHON its venv module with ensurepip.
venv_package() {
    local version default
    version="$(python_version)"
    default="$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true)"
    if [ "$version" = "$default" ]; then echo python3-venv; else echo "python$version-venv"; fi
}

packages=()
reasons=()
want() { packages+=("$1"); reasons+=("$2"); }

system() {
    for need in "$@"; do
        case "$need" in
            dot)
                command -v dot >/dev/null 2>&1 ||
                    want graphviz "its dot draws the SVG/PNG diagrams and the rule catalog" ;;
            chromium)
                command -v chromium >/dev/null 2>&1 ||
                    want chromium "the rule catalog's browser test runs in it (headless)"
                command -v chromedriver >/dev/null 2>&1 ||
                    want chromium-driver "the browser test drives Chromium through it" ;;
            *) stop "unknown need: $need" ;;
        esac
    done
    if ! venv_works; then
        if ! command -v "$PYTHON" >/dev/null 2>&1; then
            [ "$PYTHON" = python3 ] || stop "$PYTHON not found (make PYTHON=... names the Python)"
            want python3-venv "Python 3 and its venv module make $VENV"
        elif ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
            want "$(venv_package)" "$PYTHON -m venv needs it to put pip into $VENV"
        fi
    fi
    [ ${#packages[@]} -gt 0 ] || return 0

    local i
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        local lines=("missing system packages:")
        for i in "${!packages[@]}"; do lines+=("  ${packages[$i]}: ${reasons[$i]}"); done
        if ! command -v apt-get >/dev/null 2>&1; then
            stop "${lines[@]}" "no apt-get here: install them with this system's package manager," \
                "then run make again"
        fi
        stop "${lines[@]}" "not root, so not installing them; run this, then make again:" \
            "  sudo apt-get update && sudo apt-get install -y ${packages[*]}"
    fi
    for i in "${!packages[@]}"; do say "installing ${packages[$i]}: ${reasons[$i]}"; done
    say "apt-get update && apt-get install -y ${packages[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${packages[@]}" >/dev/null
}

venv() {
    venv_works && return 0
    local version
    version="$(python_version)"
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
        stop "Python >= 3.11 is needed; $PYTHON is $version." \
            "Install a newer one, then run make PYTHON=python3.11 (or newer)"
    if [ -e "$VENV" ]; then
        [ -f "$VENV/pyvenv.cfg" ] || stop "$VENV exists and is not a virtual environment; move it away"
        say "rebuilding $VENV: its python cannot import pip (a set-up that stopped half-way?)"
        rm -rf "$VENV"
    else
        say "creating $VENV with $PYTHON ($version)"
    fi
    "$PYTHON" -m venv "$VENV"
}

case "${1:-}" in
    system) shift; system "$@" ;;
    venv) venv ;;
    *) stop "usage: bootstrap.sh system [dot] [chromium] | venv" ;;
esac
