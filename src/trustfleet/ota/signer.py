"""TUF signatures made inside a PKCS#11 token (securesystemslib ``Signer``).

securesystemslib ships an ``HSMSigner``, but it drives PyKCS11; TrustFleet keeps one PKCS#11
library per process (python-pkcs11, ADR 0002), so this signer wraps our own
:class:`~trustfleet.keystore.Pkcs11EcPrivateKey` instead. Signatures use the scheme
``ecdsa-sha2-nistp256``: ECDSA P-256 over SHA-256 of the canonical payload, DER, hex.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from securesystemslib.signer import (  # type: ignore[attr-defined]  # re-exported, no __all__
    Key,
    SecretsHandler,
    Signature,
    Signer,
    SSlibKey,
)

from trustfleet.errors import Config, InvalidInput

if TYPE_CHECKING:
    from trustfleet.keystore import Pkcs11EcPrivateKey

__all__ = ["SCHEME", "Pkcs11Signer", "public_key_for"]

SCHEME = "ecdsa-sha2-nistp256"


def public_key_for(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) -> SSlibKey:
    """The securesystemslib public key (default key id) of a P-256 key.

    Args:
        key: A token key (:class:`Pkcs11EcPrivateKey`) or its public key.

    Returns:
        The ``SSlibKey`` with scheme ``ecdsa-sha2-nistp256``.

    Raises:
        InvalidInput: The key is not on P-256 (code ``ota.key.curve``).
    """
    public = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
    if not isinstance(public.curve, ec.SECP256R1):
        raise InvalidInput(
            f"TUF keys must be ECDSA P-256, not {public.curve.name}",
            hint="generate the key with curve P-256",
            code="ota.key.curve",
        )
    return SSlibKey.from_crypto(public, scheme=SCHEME)


class Pkcs11Signer(Signer):
    """Sign TUF metadata with a P-256 key that stays in a PKCS#11 token.

    Args:
        key: The token key (from ``open_key`` or ``TokenSession.ec_private_key``).
        public_key: Its securesystemslib key (default: computed with :func:`public_key_for`).

    Raises:
        Config: ``public_key`` is not the token key's public key (code ``ota.key.mismatch``).
    """

    def __init__(self, key: Pkcs11EcPrivateKey, *, public_key: SSlibKey | None = None) -> None:
        computed = public_key_for(key)
        if public_key is not None and public_key.keyval != computed.keyval:
            raise Config(
                f"key '{key.label}' in the token does not match the TUF key {public_key.keyid}",
                hint="check the OTA key map (HOME/ota/keys.json)",
                code="ota.key.mismatch",
            )
        self._key = key
        self._public = public_key if public_key is not None else computed

    def __repr__(self) -> str:
        return f"<Pkcs11Signer {self._public.keyid[:16]} {self._key.uri}>"

    @property
    def public_key(self) -> Key:
        """The securesystemslib public key this signer's signatures verify with."""
        return self._public

    def sign(self, payload: bytes) -> Signature:
        """Sign ``payload`` (ECDSA P-256, SHA-256) inside the token.

        Returns:
            The signature: key id and DER signature as hex.
        """
        der = self._key.sign(payload, ec.ECDSA(hashes.SHA256()))
        return Signature(self._public.keyid, der.hex())

    @classmethod
    def from_priv_key_uri(
        cls,
        priv_key_uri: str,
        public_key: Key,
        secrets_handler: SecretsHandler | None = None,
    ) -> Signer:
        """Not supported: open the key with ``trustfleet.keystore.open_key`` and wrap it.

        Raises:
            Config: Always (code ``ota.signer.uri``).
        """
        raise Config(
            "Pkcs11Signer is built from an open token key, not from a URI",
            hint="use Pkcs11Signer(open_key(uri, pin=...))",
            code="ota.signer.uri",
        )

    def close(self, *_: Any) -> None:
        """Close the key's session if the key owns it."""
        self._key.close()
