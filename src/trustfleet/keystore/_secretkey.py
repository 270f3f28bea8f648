"""Secret-key objects: an AES-256-GCM wrapping key used inside the token, and small readable
secrets (a constrained device's pre-shared key in its own token).

The functions take a python-pkcs11 session; :class:`~trustfleet.keystore.TokenSession` calls them
under its lock and translates PKCS#11 errors.
"""

from __future__ import annotations

import secrets
from typing import Any

from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.mechanisms import GCMParams

from trustfleet.errors import Conflict, NotFound

__all__ = [
    "GCM_NONCE_BYTES",
    "create_secret",
    "gcm_decrypt",
    "gcm_encrypt",
    "generate_aes_key",
    "has_secret",
    "read_secret",
]

GCM_NONCE_BYTES = 12
AES_KEY_BITS = 256


def _find_secret(session: Any, label: str) -> Any | None:
    attrs = {Attribute.LABEL: label, Attribute.CLASS: ObjectClass.SECRET_KEY}
    return next(iter(session.get_objects(attrs)), None)


def _require(session: Any, label: str, token: str) -> Any:
    key = _find_secret(session, label)
    if key is None:
        raise NotFound(f"no secret key '{label}' in token '{token}'", code="keystore.key.not_found")
    return key


def generate_aes_key(session: Any, label: str, *, token: str) -> None:
    """Generate a non-extractable, sensitive AES-256 key that only encrypts and decrypts.

    Raises:
        Conflict: A secret key with this label exists.
    """
    if _find_secret(session, label) is not None:
        raise Conflict(
            f"a secret key '{label}' exists in token '{token}'", code="keystore.key.exists"
        )
    session.generate_key(
        KeyType.AES,
        AES_KEY_BITS,
        label=label,
        store=True,
        template={
            Attribute.SENSITIVE: True,
            Attribute.EXTRACTABLE: False,
            Attribute.ENCRYPT: True,
            Attribute.DECRYPT: True,
            Attribute.WRAP: False,
            Attribute.UNWRAP: False,
            Attribute.SIGN: False,
            Attribute.VERIFY: False,
        },
    )


def has_secret(session: Any, label: str) -> bool:
    """Whether a secret key with this label exists."""
    return _find_secret(session, label) is not None


def gcm_encrypt(
    session: Any, label: str, plaintext: bytes, *, aad: bytes, token: str
) -> tuple[bytes, bytes]:
    """Encrypt with AES-GCM under key ``label``: returns (nonce, ciphertext with tag)."""
    key = _require(session, label, token)
    nonce = secrets.token_bytes(GCM_NONCE_BYTES)
    param = GCMParams(nonce, aad, 128)
    return nonce, bytes(key.encrypt(plaintext, mechanism=Mechanism.AES_GCM, mechanism_param=param))


def gcm_decrypt(
    session: Any, label: str, ciphertext: bytes, *, nonce: bytes, aad: bytes, token: str
) -> bytes:
    """Decrypt (and authenticate) with AES-GCM under key ``label``."""
    key = _require(session, label, token)
    param = GCMParams(nonce, aad, 128)
    return bytes(key.decrypt(ciphertext, mechanism=Mechanism.AES_GCM, mechanism_param=param))


def create_secret(session: Any, label: str, value: bytes, *, token: str) -> None:
    """Store ``value`` as a generic secret the token's user can read (CKA_SENSITIVE false).

    Raises:
        Conflict: A secret key with this label exists.
    """
    if _find_secret(session, label) is not None:
        raise Conflict(
            f"a secret key '{label}' exists in token '{token}'", code="keystore.key.exists"
        )
    session.create_object(
        {
            Attribute.CLASS: ObjectClass.SECRET_KEY,
            Attribute.KEY_TYPE: KeyType.GENERIC_SECRET,
            Attribute.LABEL: label,
            Attribute.TOKEN: True,
            Attribute.PRIVATE: True,
            Attribute.SENSITIVE: False,
            Attribute.EXTRACTABLE: True,
            Attribute.VALUE: value,
        }
    )


def read_secret(session: Any, label: str, *, token: str) -> bytes:
    """The value of a readable secret key."""
    key = _require(session, label, token)
    return bytes(key[Attribute.VALUE])
