# TrustFleet: the two commands are `make demo` and `make test`. Both install what is missing first.
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
export TF_REQUIRE_POSTGRES ?= 1
export TF_REQUIRE_RABBITMQ ?= 1

# The two distributions, their SBOMs and SHA256SUMS into dist/ (ADR 0020), dated by the last commit.
dist: deps
	SOURCE_DATE_EPOCH=$$(git log -1 --format=%ct) $(PY) packaging/build.py --out dist

.PHONY: dist deps demo test unit test-timeshift lint typecheck bench clean conformance conformance-dir \
        conformance-if-present mutation mutation-fast

deps:
	@bash scripts/bootstrap.sh

demo: deps
	@$(PY) -m trustfleet.cli.demo

test: deps
	$(VENV)/bin/ruff check src tests benchmarks packaging
	$(VENV)/bin/ruff format --check src tests benchmarks packaging
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest -q -p no:cacheprovider -n 2 --dist loadfile --durations=30
	$(MAKE) --no-print-directory test-timeshift
	$(MAKE) --no-print-directory mutation-fast
	$(MAKE) --no-print-directory conformance-if-present

# The unit tests alone (tests/unit), two workers.
unit: deps
	$(VENV)/bin/pytest -q -p no:cacheprovider -n 2 tests/unit

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
	$(VENV)/bin/ruff check src tests benchmarks packaging
	$(VENV)/bin/ruff format --check src tests benchmarks packaging

typecheck: deps
	$(VENV)/bin/mypy

bench: deps
	$(PY) benchmarks/enroll.py

# tuf-conformance against the device's TUF client (conformance/README.md), from a checkout
# outside the project (never copied into it). What the suite imports (tuf, securesystemslib with
# cryptography, pytest) is in the project's dependencies and dev extra, and bootstrap installs
# faketime, so nothing is installed here. PYTHONDONTWRITEBYTECODE keeps the checkout unwritten.
TUF_CONFORMANCE_DIR ?= $(abspath $(CURDIR)/../shared/vendor/tuf-conformance)

conformance-dir:
	$(if $(wildcard $(TUF_CONFORMANCE_DIR)/tuf_conformance),,$(error no tuf-conformance checkout at $(TUF_CONFORMANCE_DIR): set TUF_CONFORMANCE_DIR to a checkout of theupdateframework/tuf-conformance))

conformance: conformance-dir deps
	cd "$(TUF_CONFORMANCE_DIR)" && PYTHONDONTWRITEBYTECODE=1 $(abspath $(VENV))/bin/pytest -q \
		-p no:cacheprovider tuf_conformance \
		--entrypoint "$(abspath $(PY)) $(CURDIR)/conformance/trustfleet-tuf-client" $(CONFORMANCE_ARGS)

# `make test` runs the suite when the checkout is there (CI has it) and says so when it is not.
conformance-if-present:
	@$(if $(wildcard $(TUF_CONFORMANCE_DIR)/tuf_conformance),\
		$(MAKE) --no-print-directory conformance,\
		echo "conformance: skipped, no tuf-conformance checkout at $(TUF_CONFORMANCE_DIR)")

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
