"""An Ed25519 private key that lives in a PKCS#11 token and signs raw messages (CKM_EDDSA).

It offers what :class:`trustfleet.audit.note.RawSigner` asks for (``public_bytes_raw`` and
``sign``), so signed notes and checkpoints are signed inside the token.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, Protocol

from trustfleet.errors import Config
from trustfleet.keystore._tokenkey import TokenKey

if TYPE_CHECKING:
    from pkcs11.types import SignMixin

__all__ = ["ED25519_CURVE_OID", "Pkcs11Ed25519Key", "ed25519_public_bytes"]

ED25519_CURVE_OID: Final = "1.3.101.112"
"""``CKA_EC_PARAMS`` of an Ed25519 key: the named curve id-Ed25519 (RFC 8410)."""
_PUBLIC_KEY_BYTES: Final = 32
_SIGNATURE_BYTES: Final = 64
_OCTET_STRING: Final = 0x04


class _Signer(Protocol):
    """What a key needs from the session that holds it (implemented by TokenSession)."""

    def _sign_eddsa(self, key: SignMixin, message: bytes, *, label: str) -> bytes: ...

    def close(self) -> None: ...


def ed25519_public_bytes(ec_point: bytes, *, label: str) -> bytes:
    """The 32-byte Ed25519 public key from a token's ``CKA_EC_POINT``.

    PKCS#11 3.0 says the point is a DER OCTET STRING (``04 20`` + 32 bytes), as SoftHSM2
    returns it; some modules return the 32 raw bytes, which are accepted too.

    Args:
        ec_point: The attribute's value.
        label: The key label (for the error).

    Returns:
        The RFC 8032 encoding of the public key.

    Raises:
        Config: The attribute is neither form.
    """
    if len(ec_point) == _PUBLIC_KEY_BYTES:
        return bytes(ec_point)
    if (
        len(ec_point) == _PUBLIC_KEY_BYTES + 2
        and ec_point[0] == _OCTET_STRING
        and ec_point[1] == _PUBLIC_KEY_BYTES
    ):
        return bytes(ec_point[2:])
    raise Config(
        f"cannot read the Ed25519 public key of '{label}' from the token",
        code="keystore.key.public",
    )


class Pkcs11Ed25519Key(TokenKey[_Signer, bytes]):
    """An Ed25519 private key in a PKCS#11 token: it signs, it is never exported.

    Signing is thread-safe (the session serialises it). Do not construct directly: use
    :meth:`TokenSession.generate_ed25519_key`, :meth:`TokenSession.ed25519_key` or
    :func:`open_ed25519_key`.
    """

    def public_bytes_raw(self) -> bytes:
        """The 32-byte Ed25519 public key (read from the token once, when the key was opened)."""
        return self._public_key

    def sign(self, message: bytes) -> bytes:
        """Sign ``message`` with pure Ed25519 (RFC 8032) inside the token.

        Args:
            message: The whole message (Ed25519 hashes it itself).

        Returns:
            The 64-byte signature.

        Raises:
            Unavailable: The session is closed or the token failed.
            Config: The token returned something that is not an Ed25519 signature.
        """
        signature = self._signer._sign_eddsa(self._handle, bytes(message), label=self._label)
        if len(signature) != _SIGNATURE_BYTES:
            raise Config(
                f"the token returned a {len(signature)}-byte signature for '{self._label}'"
            )
        return signature
