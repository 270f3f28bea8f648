"""Fixtures of this folder; their code lives in inventorykit.py (a unique module name, so test
modules can import its classes whatever order pytest collects folders in)."""

from inventorykit import fleet  # noqa: F401  # fixtures, found by pytest here
