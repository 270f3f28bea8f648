"""Fixtures of this folder; their code lives in agentfleet.py (a unique module name, so test
modules can import its classes whatever order pytest collects folders in)."""

from agentfleet import fleet  # noqa: F401  # fixtures, found by pytest here
