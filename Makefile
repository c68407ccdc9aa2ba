# Modelyard — one Makefile for people and CI.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
HOST    ?= 127.0.0.1
PORT    ?= 8000

.PHONY: venv serve test lint typecheck unit suite bench demo clean browser

# The fast subset (under a minute): the ML core, data formats, the registry's checks, the
# batcher and protocol codecs, the SDK and CLI against fakes, migrations, working files.
UNIT := tests/nn tests/training tests/runtimes tests/datasets tests/registry tests/db \
	tests/serving/test_batcher.py tests/serving/test_oip.py tests/compression/test_methods.py \
	tests/client/test_sdk_unit.py tests/client/test_jobs_unit.py tests/client/test_deploy_unit.py \
	tests/cli/test_cli_unit.py tests/cli/test_cli_jobs_unit.py tests/cli/test_cli_deploy_unit.py \
	tests/storage/test_workdirs.py tests/storage/test_staging.py tests/storage/test_crypto.py

venv: $(STAMP)

# torch is installed first and pinned, so that no multi-GB CUDA build is pulled on a CPU machine.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

serve: venv
	$(BIN)/modelyard serve --host $(HOST) --port $(PORT)

lint: venv
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: venv
	$(BIN)/mypy

unit: venv
	$(BIN)/pytest -q $(UNIT)

# The suite runs on TEST_WORKERS processes (pytest-xdist). A module's tests run together on one
# of them, in order: the Ray cluster tests one after another, the dashboard's browser story on
# one page.
TEST_WORKERS ?= 2

suite: venv browser
	$(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadscope --durations=25

# The dashboard's tests drive Debian's Chromium (Playwright cannot download its own here).
browser:
	test -x /usr/bin/chromium || (apt-get update -qq && apt-get install -y -qq chromium chromium-driver)

test: lint typecheck suite

bench: venv
	$(BIN)/python -m bench

demo: venv
	$(BIN)/modelyard demo

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache test-artifacts
