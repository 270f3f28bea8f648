"""Fixtures of this folder; their code lives in ingestkit.py (a unique module name, so test
modules can import its classes whatever order pytest collects folders in)."""

from ingestkit import fleet  # noqa: F401  # fixtures, found by pytest here
