"""Fixtures of the campaign tests; their code lives in campaignkit.py and loopkit.py (unique
module names, so test modules can import their helpers whatever order pytest collects in)."""

from campaignkit import clock, crt  # noqa: F401  # fixtures, found by pytest here
from loopkit import campaign_fleet  # noqa: F401
