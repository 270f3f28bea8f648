"""Fixtures of this folder; their code lives in brokerkit_fixtures.py (a unique module name, so test
modules can import its classes whatever order pytest collects folders in)."""

from brokerkit_fixtures import (  # noqa: F401  # fixtures, found by pytest here
    broker,
    cmqtt,
    counted,
    fleet,
    gmqtt,
    guarded,
    mqtt,
    one_slot,
)
