"""Fixtures of the pki tests: the hierarchy on P-256 and on P-384."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from pki_hierarchy import Hierarchy, build_hierarchy


@pytest.fixture(scope="session", params=["P-256", "P-384"])
def hierarchy(request: pytest.FixtureRequest) -> Hierarchy:
    curve = ec.SECP256R1() if request.param == "P-256" else ec.SECP384R1()
    return build_hierarchy(curve)
