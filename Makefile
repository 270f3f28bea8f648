# TrustFleet: the two commands are `make demo` and `make test`. Both install what is missing first.
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
export TF_REQUIRE_POSTGRES ?= 1

.PHONY: deps demo test lint typecheck bench clean conformance conformance-dir

deps:
	@bash scripts/bootstrap.sh

demo: deps
	@$(PY) -m trustfleet.cli.demo

test: deps
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest -q -p no:cacheprovider -n 2 --dist loadfile

lint: deps
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

typecheck: deps
	$(VENV)/bin/mypy

bench: deps
	$(PY) benchmarks/enroll.py

# tuf-conformance against the device's TUF client (conformance/README.md). The suite's
# requirements are installed unpinned so its exact pins never downgrade the project's venv.
conformance-dir:
	$(if $(TUF_CONFORMANCE_DIR),,$(error TUF_CONFORMANCE_DIR is unset: point it at a checkout of theupdateframework/tuf-conformance))

conformance: conformance-dir deps
	$(PY) -c 'import re,sys,tomllib; d=tomllib.load(open(sys.argv[1],"rb"))["project"]["dependencies"]; print("\n".join(re.split("[=<>!~ ]",x)[0] for x in d))' "$(TUF_CONFORMANCE_DIR)/pyproject.toml" > $(VENV)/tuf-conformance-requirements.txt
	$(VENV)/bin/pip install -q -r $(VENV)/tuf-conformance-requirements.txt
	cd "$(TUF_CONFORMANCE_DIR)" && $(CURDIR)/$(VENV)/bin/pytest -q -p no:cacheprovider tuf_conformance \
		--entrypoint "$(CURDIR)/$(PY) $(CURDIR)/conformance/trustfleet-tuf-client" $(CONFORMANCE_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
