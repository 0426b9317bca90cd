# fleetmail's one task runner: developers and CI use the same targets.
# Needs only Python 3.11+ and make: uv (pinned) is installed into .fleetmail/tools when absent.

UV_VERSION := 0.13.9
PYTHON ?= python3
TOOLS := .fleetmail/tools
UV := $(shell command -v uv 2>/dev/null || echo $(TOOLS)/bin/uv)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Test files run in this many processes at once, each with its own stack on its own ports.
# Three on two cores: much of a test is waiting on the bus or a timer (measured: 5 min 24 s
# with three, 6 min 7 s with two, for 623 tests).
TEST_WORKERS ?= 3

.PHONY: install run demo test test-unit lint bench contracts clean

$(TOOLS)/bin/uv:
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet "uv==$(UV_VERSION)"

# Bytecode is compiled once here: where PYTHONDONTWRITEBYTECODE is set (as on CI machines),
# Python would otherwise compile every module again in each of the dozens of processes a
# test run starts (a service took 3 s to import instead of 1.5 s).
$(STAMP): uv.lock pyproject.toml $(if $(findstring $(TOOLS),$(UV)),$(TOOLS)/bin/uv)
	$(UV) sync --frozen --compile-bytecode --python $(PYTHON)
	$(VENV)/bin/python -m compileall -q contracts/src runtime/src services devkit/src cli/src
	@touch $(STAMP)

install: $(STAMP) ## create the environment from the lock file

run: $(STAMP) ## start the whole stack on embedded defaults, with a sample fleet
	$(PY) -m fleetmail_devkit run

demo: $(STAMP) ## the same, exiting after the sample fleet's jobs
	$(PY) -m fleetmail_devkit demo

# --no-loadscope-reorder: xdist otherwise hands out files with the most tests first, so the
# single-test modules with a stack of their own (test_scale_out: minutes) started last and
# the run ended on them alone; tests/conftest.py orders them first.
test: $(STAMP) ## every tier: unit, component, integration, security, end-to-end (TEST_WORKERS stacks in parallel)
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=25

test-unit: $(STAMP) ## the unit tier alone: pure logic, fakes, no servers (seconds)
	$(PY) -m pytest tests/unit -q

lint: $(STAMP) ## ruff (lint and format), and mypy over every package (strict for the product)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy contracts/src runtime/src services/*/src cli/src devkit/src bench

bench: $(STAMP) ## benchmarks: one table, and .fleetmail/bench.json
	$(PY) -m bench

contracts: $(STAMP) ## regenerate the JSON Schemas and the AsyncAPI document
	$(PY) -m fleetmail_devkit.contracts_docs write

clean:
	rm -rf .fleetmail/demo .fleetmail/test .pytest_cache
