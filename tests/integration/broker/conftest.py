"""Fixtures of this folder; their code lives in brokerkit_fixtures.py (a unique module name, so test
modules can import its classes whatever order pytest collects folders in)."""

from brokerkit_fixtures import broker, fleet, gmqtt, guarded, mqtt  # noqa: F401  # fixtures, found by pytest here
