# Two commands for a fresh machine (see README):
#   make apply   apply the default canary state (states/canary.yaml)
#   make test    run the whole test suite against a real Docker engine
# Both create .venv and make sure a Docker engine with Compose v2 is reachable first.

PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
STATE ?= states/canary.yaml

.PHONY: apply plan test test-fast lint docs engine clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	# Bytecode for reconciler and every dependency, even where PYTHONDONTWRITEBYTECODE is set
	# (pip then writes none): else each `python -m reconciler` compiles pydantic & co. again.
	$(VENV)/bin/python -m compileall -q -j 0 reconciler "$$($(VENV)/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
	touch $(STAMP)

engine:
	bash deploy/engine/ensure-docker.sh

apply: $(STAMP) engine
	$(VENV)/bin/python -m reconciler apply $(STATE) --report canary-report.md --junit canary-junit.xml

plan: $(STAMP) engine
	$(VENV)/bin/python -m reconciler plan $(STATE)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

# The generated parts of docs/ (CLI and state-file references); a test fails when they are stale.
docs: $(STAMP)
	$(VENV)/bin/python -m reconciler.cli.reference docs

test: $(STAMP) engine lint
	EDGES_EXEC=1 EDGES_EXAMPLES=1000 $(VENV)/bin/python -m pytest -rs --durations=15

# Everything that needs no Docker engine (tests marked `docker` are left out), on two
# workers (pytest-xdist), in under a minute. tests/mutations/run_mutations.py checks that it catches six classic slips.
test-fast: $(STAMP)
	$(VENV)/bin/python -m pytest -q -m "not docker" -p no:cacheprovider -n 2

clean:
	rm -rf $(VENV)
