"""An Ed25519 key in memory with the token key's signing interface (``audit.RawSigner``).

For tests that need a log's or a witness's key without a token: made from a one-byte seed, so
the same seed gives the same key (and the same signatures) in every run.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

__all__ = ["SoftEd25519Key"]


class SoftEd25519Key:
    """An Ed25519 key whose 32-byte seed is ``seed`` repeated."""

    def __init__(self, seed: int) -> None:
        self._key = Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32)

    def public_bytes_raw(self) -> bytes:
        """The 32-byte public key."""
        return self._key.public_key().public_bytes_raw()

    def sign(self, message: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``message``."""
        return self._key.sign(message)
