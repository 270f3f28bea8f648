"""Fixtures of this folder; their code lives in otadevkit.py (a unique module name)."""

from otadevkit import ota_fleet  # noqa: F401  # fixtures, found by pytest here
