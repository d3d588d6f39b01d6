# Set-up and everyday commands. Each target creates .venv on first use (CPU torch first).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU wheel of torch; an unpinned torch would pull a multi-GB CUDA build.
TORCH ?= torch==2.13.0

.PHONY: help install train test lint format
help: ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

install: $(VENV)/.installed ## create .venv with CPU torch and ml_tabular[dev]
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

train: install ## train the tabular demo, tracked in the embedded SQLite store (mlruns/)
	$(BIN)/ml_tabular fit --config configs/tabular.yaml

test: install ## lint, then the whole test suite: the default one, then the heavy tests (what CI runs)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest
	$(BIN)/pytest -m heavy

format: install ## fix lint and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .
