"""What every private key held in a token session has: label, id, URI, and maybe its own session."""

from __future__ import annotations

from typing import TYPE_CHECKING, Generic, Protocol, Self, TypeVar

from trustfleet.keystore._uri import Pkcs11Uri

if TYPE_CHECKING:
    from pkcs11.types import SignMixin

__all__ = ["TokenKey"]


class _Session(Protocol):
    def close(self) -> None: ...


_Signer = TypeVar("_Signer", bound=_Session)
_Public = TypeVar("_Public")


class TokenKey(Generic[_Signer, _Public]):
    """The part of a token key that does not depend on its algorithm.

    Args:
        signer: The session that holds the key and signs with it.
        handle: python-pkcs11's private key object.
        public_key: The public key, read from the token when the key was opened.
        label: ``CKA_LABEL``.
        key_id: ``CKA_ID``.
        uri: A PKCS#11 URI naming the key.
        owns_session: Whether :meth:`close` closes ``signer`` (keys opened by URI).
    """

    def __init__(
        self,
        *,
        signer: _Signer,
        handle: SignMixin,
        public_key: _Public,
        label: str,
        key_id: bytes,
        uri: Pkcs11Uri,
        owns_session: bool = False,
    ) -> None:
        self._signer = signer
        self._handle = handle
        self._public_key = public_key
        self._label = label
        self._key_id = key_id
        self._uri = uri
        self._owns_session = owns_session

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._uri}>"

    @property
    def label(self) -> str:
        """The key's ``CKA_LABEL``."""
        return self._label

    @property
    def key_id(self) -> bytes:
        """The key's ``CKA_ID``."""
        return self._key_id

    @property
    def uri(self) -> Pkcs11Uri:
        """A PKCS#11 URI naming this key (token, object, id, type=private)."""
        return self._uri

    def close(self) -> None:
        """Close the session this key owns (keys opened by URI); otherwise nothing."""
        if self._owns_session:
            self._signer.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
