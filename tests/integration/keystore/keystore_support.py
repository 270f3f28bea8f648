"""Constants shared by the keystore integration tests (a unique name, unlike conftest)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from support.certs import cert_builder

SO_PIN = "so-PIN-for-tests-0001"
USER_PIN = "user-PIN-for-tests-0001"

MakeHome = Callable[[str], Path]
"""Creates a SoftHSM2 home (conf + token dir) by name under the test's tmp dir."""


def self_signed_pem(key: ec.EllipticCurvePrivateKey, cn: str = "keystore-test") -> bytes:
    """A one-day self-signed certificate of ``key`` (PEM), for TLS contexts in tests."""
    now = datetime.now(UTC)
    builder = cert_builder(
        cn, key, not_before=now - timedelta(minutes=5), not_after=now + timedelta(days=1)
    )
    cert = builder.sign(key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM)
