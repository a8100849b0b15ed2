# Every target bootstraps its own virtualenv from nothing, so a fresh machine
# needs only `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck pytest bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m registry.demo

lint: $(STAMP)
	$(BIN)/ruff check registry tests benchmarks
	$(BIN)/ruff format --check registry tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest

test: lint typecheck pytest

# The full suite and its report (benchmarks/results/); `make bench ARGS=--quick`
# runs the quick subset into benchmarks/results/partial/ instead.
bench: $(STAMP)
	$(BIN)/python -m benchmarks.run $(ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache
