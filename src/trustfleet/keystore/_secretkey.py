"""Secret-key objects: an AES-256-GCM wrapping key used inside the token, and small readable
secrets (a constrained device's pre-shared key in its own token).

The functions take a python-pkcs11 session; :class:`SecretKeyOps` gives
:class:`~trustfleet.keystore.TokenSession` its secret-key methods over them (run under the
session's lock, PKCS#11 errors translated, by ``TokenSession._run``).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import pkcs11.exceptions as p11e
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.mechanisms import GCMParams

from trustfleet.errors import Conflict, NotFound, VerificationFailed
from trustfleet.keystore._cryptoki import MAX_KEY_LABEL_CHARS, check_label

__all__ = [
    "GCM_NONCE_BYTES",
    "SecretKeyOps",
    "create_secret",
    "gcm_decrypt",
    "gcm_encrypt",
    "generate_aes_key",
    "has_secret",
    "read_secret",
    "replace_secret",
]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

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
    """Decrypt (and authenticate) with AES-GCM under key ``label``.

    Raises:
        VerificationFailed: The tag does not match (wrong key, nonce, AAD or ciphertext).
    """
    key = _require(session, label, token)
    param = GCMParams(nonce, aad, 128)
    try:
        return bytes(key.decrypt(ciphertext, mechanism=Mechanism.AES_GCM, mechanism_param=param))
    except (p11e.EncryptedDataInvalid, p11e.EncryptedDataLenRange) as exc:
        raise VerificationFailed(
            "a ciphertext does not decrypt under its key", code="keystore.decrypt.failed"
        ) from exc


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


def replace_secret(session: Any, label: str, value: bytes, *, token: str) -> None:
    """Store ``value`` as the readable secret ``label``, destroying any secret key so labelled."""
    for old in session.get_objects(
        {Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.LABEL: label}
    ):
        old.destroy()
    create_secret(session, label, value, token=token)


def read_secret(session: Any, label: str, *, token: str) -> bytes:
    """The value of a readable secret key."""
    key = _require(session, label, token)
    return bytes(key[Attribute.VALUE])


class _Runs(Protocol):
    _label: str

    def _run(self, action: str, op: Callable[..., _T], *args: Any, **kwargs: Any) -> _T: ...


class SecretKeyOps:
    """The secret-key methods of :class:`~trustfleet.keystore.TokenSession`."""

    def generate_aes_key(self: _Runs, label: str) -> None:
        """Generate a non-extractable AES-256 key that only encrypts and decrypts in the token.

        Raises:
            Conflict: A secret key with this label exists.
        """
        check_label(label, "a key label", MAX_KEY_LABEL_CHARS)
        self._run("generating an AES key", generate_aes_key, label)
        logger.info("generated AES key %r in token %r", label, self._label)

    def has_secret_key(self: _Runs, label: str) -> bool:
        """Whether a secret-key object with this label exists."""
        return self._run("finding a secret key", _has_secret, label)

    def aes_gcm_encrypt(
        self: _Runs, label: str, plaintext: bytes, *, aad: bytes
    ) -> tuple[bytes, bytes]:
        """AES-GCM encryption under key ``label`` inside the token.

        Returns:
            The random 12-byte nonce and the ciphertext with its 16-byte tag.

        Raises:
            NotFound: No such key.
        """
        return self._run("encrypting", gcm_encrypt, label, plaintext, aad=aad)

    def aes_gcm_decrypt(
        self: _Runs, label: str, ciphertext: bytes, *, nonce: bytes, aad: bytes
    ) -> bytes:
        """AES-GCM decryption under key ``label`` inside the token.

        Raises:
            NotFound: No such key.
            VerificationFailed: The tag does not match (wrong key, nonce, AAD or ciphertext).
        """
        return self._run("decrypting", gcm_decrypt, label, ciphertext, nonce=nonce, aad=aad)

    def create_secret(self: _Runs, label: str, value: bytes) -> None:
        """Store a secret the token's user may read back (a device's pre-shared key).

        Raises:
            Conflict: A secret key with this label exists.
        """
        check_label(label, "a key label", MAX_KEY_LABEL_CHARS)
        self._run("storing a secret", create_secret, label, value)

    def replace_secret(self: _Runs, label: str, value: bytes) -> None:
        """Store a readable secret in place of any secret key with this label (a device's
        pre-shared key written again by a bootstrap server)."""
        check_label(label, "a key label", MAX_KEY_LABEL_CHARS)
        self._run("storing a secret", replace_secret, label, value)

    def read_secret(self: _Runs, label: str) -> bytes:
        """The value of a readable secret (see :meth:`create_secret`).

        Raises:
            NotFound: No such secret.
        """
        return self._run("reading a secret", read_secret, label)


def _has_secret(session: Any, label: str, *, token: str) -> bool:
    del token  # the signature of the other secret-key operations
    return has_secret(session, label)
