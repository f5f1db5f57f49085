# Everything the project needs: the system packages a goal needs (scripts/bootstrap.sh installs
# the missing ones as root, or stops with the apt-get command), then .venv from pyproject.toml.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DB     ?= sqlite:///referral.db
BOOTSTRAP := PYTHON=$(PYTHON) VENV=$(VENV) bash scripts/bootstrap.sh

.PHONY: run test bench faults lint clean system venv

# A .venv whose python cannot import pip (a first `python3 -m venv` that stopped half-way, or
# pip removed since) is rebuilt by `venv`; its stamp then no longer counts.
ifneq ($(shell $(BIN)/python -c 'import pip' 2>/dev/null && echo ok),ok)
.PHONY: $(STAMP)
endif

# NEEDS is set per goal below (dot, chromium); python3-venv is added when .venv is to be made.
system:
	@$(BOOTSTRAP) system $(NEEDS)

venv: system
	@$(BOOTSTRAP) venv

$(STAMP): pyproject.toml | venv
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: NEEDS := dot
run: system $(STAMP)
	REFERRAL_DB_URL=$(DB) PATH=$(abspath $(BIN)):$$PATH bash scripts/demo.sh

# The catalog's browser test drives Debian's headless Chromium (never a downloaded one).
# TEST_WORKERS pytest-xdist workers (one per core by default; 0: in this process); each has
# its own PostgreSQL database (tests/conftest.py).
TEST_WORKERS ?= auto
test: NEEDS := dot chromium
test: system $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) $(PYTEST_ARGS)

# The bench extra (rule-engine, business-rules, py-spy) has its own stamp.
BENCH_STAMP := $(VENV)/.installed-bench
BENCH_ARGS ?=

$(BENCH_STAMP): pyproject.toml $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

faults: $(STAMP)
	FAULTS_SCALE=full FAULTS_RESULTS=out/faults.txt $(BIN)/python -m pytest -m faults tests/faults $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) build *.egg-info referral.db
