# TrustFleet: the two commands are `make demo` and `make test`. Both install what is missing first.
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
export TF_REQUIRE_POSTGRES ?= 1

.PHONY: deps demo test lint typecheck bench clean

deps:
	@bash scripts/bootstrap.sh

demo: deps
	@$(PY) -m trustfleet.cli.demo

test: deps
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest -q -p no:cacheprovider

lint: deps
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

typecheck: deps
	$(VENV)/bin/mypy

bench: deps
	$(PY) benchmarks/enroll.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
