# TrustFleet: the two commands are `make demo` and `make test`. Both install what is missing first.
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
export TF_REQUIRE_POSTGRES ?= 1

.PHONY: deps demo test test-timeshift lint typecheck bench clean conformance conformance-dir \
        mutation mutation-fast

deps:
	@bash scripts/bootstrap.sh

demo: deps
	@$(PY) -m trustfleet.cli.demo

test: deps
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest -q -p no:cacheprovider -n 2 --dist loadfile
	$(MAKE) --no-print-directory test-timeshift
	$(MAKE) --no-print-directory mutation-fast

# The time-sensitive tests once more with the wall clock a year ahead (tests/timeshift/README.md):
# every certificate, CRL, TUF expiry, TPM clock and campaign timeout must work on any date.
TIMESHIFT_S     ?= 31536000
TIMESHIFT_TESTS ?= tests/unit tests/integration/attestation_service tests/integration/services \
                   tests/integration/est tests/integration/campaigns tests/integration/ota \
                   tests/integration/ota_client tests/integration/tpm tests/integration/keystore \
                   tests/integration/store

$(VENV)/timeshift.so: tests/timeshift/timeshift.c
	gcc -O2 -shared -fPIC -o $@ $< -ldl

test-timeshift: deps $(VENV)/timeshift.so
	LD_PRELOAD=$(CURDIR)/$(VENV)/timeshift.so TF_TIMESHIFT_S=$(TIMESHIFT_S) \
		$(VENV)/bin/pytest -q -p no:cacheprovider -n 2 --dist loadfile $(TIMESHIFT_TESTS)

# Mutation testing of the trust cores (docs/mutation.md): every module in
# tests/mutation/targets.toml must keep a score of at least MUTATION_MIN percent. CI runs the
# modules marked fast (the attestation verifier and the CSR policy).
MUTATION_MIN ?= 90
mutation: deps
	$(PY) tests/mutation/run.py --min-score $(MUTATION_MIN) --report docs/mutation.md

mutation-fast: deps
	$(PY) tests/mutation/run.py --fast --min-score $(MUTATION_MIN)

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
