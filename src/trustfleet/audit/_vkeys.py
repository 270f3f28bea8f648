"""Verifier keys (vkeys), key ids and the strict checks signed notes share (c2sp.org/signed-note).

Everything here is public through :mod:`trustfleet.audit.note`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import unicodedata
from dataclasses import dataclass
from typing import Final

from trustfleet.errors import InvalidInput

__all__ = [
    "COSIGNATURE_V1",
    "ED25519",
    "ED25519_KEY_BYTES",
    "KEY_ID_BYTES",
    "NoteError",
    "Verifier",
    "b64decode_strict",
    "check_name",
    "key_id",
    "parse_verifier_key",
    "verifier_key",
]

ED25519: Final = 0x01
"""Signature type of a plain Ed25519 note signature."""
COSIGNATURE_V1: Final = 0x04
"""Signature type of a timestamped Ed25519 checkpoint cosignature (cosignature/v1)."""

KEY_ID_BYTES: Final = 4
"""Length of a key id."""
ED25519_KEY_BYTES: Final = 32
"""Length of an Ed25519 public key (RFC 8032)."""
_KEY_TYPES: Final = frozenset({ED25519, COSIGNATURE_V1})


class NoteError(InvalidInput):
    """A signed note, a verifier key or a signature that is malformed or does not verify."""


def _is_valid_name(name: str) -> bool:
    """Non-empty, no Unicode space, no plus, no control character (the spec's key name)."""
    return bool(name) and not any(
        ch == "+" or ch.isspace() or unicodedata.category(ch) in {"Zs", "Zl", "Zp", "Cc"}
        for ch in name
    )


def check_name(name: str) -> None:
    """Refuse a key name that is empty or holds a space, a plus or a control character.

    Raises:
        NoteError: The name is invalid.
    """
    if not _is_valid_name(name):
        raise NoteError(f"invalid key name {name!r}: it must be non-empty, without spaces or '+'")


def b64decode_strict(data: str, *, what: str, error: type[NoteError] = NoteError) -> bytes:
    """Strict standard base64: padded, canonical (re-encodes to the same text).

    Raises:
        NoteError: (or ``error``) naming ``what``.
    """
    try:
        raw = base64.b64decode(data.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError) as exc:
        raise error(f"{what} is not valid base64") from exc
    if base64.b64encode(raw).decode("ascii") != data:
        raise error(f"{what} is not canonical base64")
    return raw


def key_id(name: str, key_type: int, public_key: bytes) -> bytes:
    """The key id: the first 4 bytes of SHA-256(name || 0x0A || type || public key).

    Args:
        name: The key name.
        key_type: The signature type byte (:data:`ED25519`, :data:`COSIGNATURE_V1`).
        public_key: The encoded public key (32 bytes for Ed25519).

    Returns:
        The 4-byte key id.
    """
    digest = hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([key_type]) + public_key)
    return digest.digest()[:KEY_ID_BYTES]


def verifier_key(name: str, key_type: int, public_key: bytes) -> str:
    """The vkey ``name+hex(key id)+base64(type || public key)``.

    Args:
        name: The key name.
        key_type: The signature type byte.
        public_key: The encoded public key.

    Returns:
        The verifier key text.

    Raises:
        NoteError: The name, type or key is not valid.
    """
    verifier = Verifier(name=name, key_type=key_type, public_key=public_key)
    encoded = base64.b64encode(bytes([key_type]) + public_key).decode("ascii")
    return f"{name}+{verifier.key_id.hex()}+{encoded}"


@dataclass(frozen=True)
class Verifier:
    """A known public key: its name, signature type and 32-byte Ed25519 key.

    Raises:
        NoteError: The name is invalid, the type unsupported or the key not 32 bytes.
    """

    name: str
    key_type: int
    public_key: bytes

    def __post_init__(self) -> None:
        check_name(self.name)
        if self.key_type not in _KEY_TYPES:
            raise NoteError(f"unsupported signature type 0x{self.key_type:02x} for {self.name}")
        if len(self.public_key) != ED25519_KEY_BYTES:
            raise NoteError(f"the Ed25519 key of {self.name} is not 32 bytes")

    @property
    def key_id(self) -> bytes:
        """The 4-byte key id of this key."""
        return key_id(self.name, self.key_type, self.public_key)

    def vkey(self) -> str:
        """This verifier as a vkey string."""
        return verifier_key(self.name, self.key_type, self.public_key)


def parse_verifier_key(vkey: str) -> Verifier:
    """Parse a vkey ``name+hex(key id)+base64(type || public key)``.

    Args:
        vkey: The verifier key text.

    Returns:
        The verifier (types :data:`ED25519` and :data:`COSIGNATURE_V1` only).

    Raises:
        NoteError: The vkey is malformed, of another type, or its key id does not match.
    """
    parts = vkey.split("+", 2)
    if len(parts) != 3:
        raise NoteError("verifier key is not name+keyid+key")
    name, hex_id, key64 = parts
    check_name(name)
    if len(hex_id) != 2 * KEY_ID_BYTES or any(ch not in "0123456789abcdef" for ch in hex_id):
        raise NoteError(f"verifier key id of {name} is not 8 lowercase hex digits")
    raw = b64decode_strict(key64, what=f"verifier key of {name}")
    if not raw:
        raise NoteError(f"verifier key of {name} is empty")
    verifier = Verifier(name=name, key_type=raw[0], public_key=raw[1:])
    if verifier.key_id.hex() != hex_id:
        raise NoteError(f"verifier key id of {name} does not match its key")
    return verifier
