# The commands people type. CI runs `make test` (see .ci/run).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# A pinned torch installs in seconds where a local wheel exists (CPU machines, CI) and pulls the
# CUDA build from PyPI on GPU hosts. The project itself accepts any torch >= 2.2.
TORCH_SPEC ?= torch==2.13.0
HOST ?= 0.0.0.0
PORT ?= 8000
DATA ?= data

.PHONY: setup serve test lint lint-docker format typecheck pytest demo-weights clean

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

setup: $(BIN)/.installed  ## create .venv with the project and its dev tools

serve: setup  ## run the service on weights/ (the embedded demo weights by default)
	$(BIN)/uvicorn app.main:app --host $(HOST) --port $(PORT) --no-access-log \
		--timeout-graceful-shutdown 20  # a stalled upload cannot hold SIGTERM for ever

lint: setup lint-docker
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The deployment files, without a Docker engine: hadolint on the Dockerfile, the Compose spec's
# JSON schema (vendored in check-jsonschema, no network) on docker-compose.yml.
lint-docker: setup
	$(BIN)/hadolint Dockerfile
	$(BIN)/check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

typecheck: setup
	$(BIN)/mypy

pytest: setup
	$(BIN)/python -m pytest -m "not slow"

test: lint typecheck pytest  ## what CI runs: lint, type check, tests

# Rebuild weights/demo.safetensors from the synthetic generator (about 10 minutes on 2 CPU cores).
demo-weights: setup
	$(BIN)/python -m training synth --out $(DATA)/synthetic --category demo --seed 0 --overwrite
	$(BIN)/python -m training fit --data-root $(DATA)/synthetic --category demo --seed 0 \
		--max-steps 500 --out weights/demo.safetensors --no-progress
	$(BIN)/python -m training evaluate --data-root $(DATA)/synthetic --category demo \
		--checkpoint weights/demo.safetensors --report-dir reports/demo --record

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
