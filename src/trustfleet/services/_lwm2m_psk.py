"""Pre-shared keys at rest: AES-256-GCM inside the ``tf-service`` token (ADR 0022).

The wrapping key ``lwm2m-psk-wrap`` is generated in the token on first use (a home made before
LwM2M gets it then) and never leaves it. The additional data binds a ciphertext to its identity
and device, so a row copied onto another identity does not decrypt.
"""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict

from trustfleet.keystore import TokenSession

__all__ = ["PSK_WRAP_LABEL", "PskVault", "new_psk"]

PSK_WRAP_LABEL = "lwm2m-psk-wrap"
_CACHE_ENTRIES = 256


def new_psk(size_bytes: int) -> bytes:
    """A fresh random pre-shared key."""
    return secrets.token_bytes(size_bytes)


def _aad(identity: str, device_id: str) -> bytes:
    return b"trustfleet-lwm2m-psk\x00" + identity.encode() + b"\x00" + device_id.encode()


class PskVault:
    """Encrypts and decrypts pre-shared keys in a token session; a small bounded cache of keys
    decrypted recently (cleared by :meth:`forget`). Thread-safe.

    Args:
        token: A logged-in session on ``tf-service`` (the vault does not close it).
    """

    def __init__(self, token: TokenSession) -> None:
        self._token = token
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self._ready = False

    def __repr__(self) -> str:
        return f"<PskVault token={self._token.label!r} cached={len(self._cache)}>"

    def _ensure_key(self) -> None:
        if not self._ready:
            if not self._token.has_secret_key(PSK_WRAP_LABEL):
                self._token.generate_aes_key(PSK_WRAP_LABEL)
            self._ready = True

    def encrypt(self, key: bytes, *, identity: str, device_id: str) -> tuple[bytes, bytes]:
        """Encrypt a PSK; returns (nonce, ciphertext)."""
        with self._lock:
            self._ensure_key()
            return self._token.aes_gcm_encrypt(PSK_WRAP_LABEL, key, aad=_aad(identity, device_id))

    def decrypt(self, ciphertext: bytes, *, nonce: bytes, identity: str, device_id: str) -> bytes:
        """Decrypt a PSK (cached by identity).

        Raises:
            VerificationFailed: The ciphertext does not belong to this identity and device.
        """
        with self._lock:
            cached = self._cache.get(identity)
            if cached is not None:
                self._cache.move_to_end(identity)
                return cached
            self._ensure_key()
            key = self._token.aes_gcm_decrypt(
                PSK_WRAP_LABEL, ciphertext, nonce=nonce, aad=_aad(identity, device_id)
            )
            self._cache[identity] = key
            while len(self._cache) > _CACHE_ENTRIES:
                self._cache.popitem(last=False)
            return key

    def forget(self, identities: list[str] | None = None) -> None:
        """Drop cached keys (all of them, or these identities')."""
        with self._lock:
            if identities is None:
                self._cache.clear()
            else:
                for identity in identities:
                    self._cache.pop(identity, None)
