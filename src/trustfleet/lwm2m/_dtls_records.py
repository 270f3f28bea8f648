"""Pure pieces of the DTLS server: stateless cookies and packing records into datagrams.

Nothing here touches a socket or OpenSSL, so it is tested alone (tests/unit/lwm2m).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Iterator

__all__ = ["CookieJar", "pack_records", "split_records"]

_RECORD_HEADER_BYTES = 13  # DTLS 1.2 record header: type, version, epoch, seq(6), length(2)
_COOKIE_SECRET_BYTES = 32


class CookieJar:
    """HelloVerifyRequest cookies (RFC 6347 4.2.1): HMAC-SHA256 of the peer's address.

    The secret is replaced every ``ttl_s``; a cookie under the previous secret still verifies,
    so a client between ClientHello and its second ClientHello across a rotation is not lost.
    The jar holds no per-peer state: a spoofed source costs the server one HMAC.
    """

    def __init__(self, *, ttl_s: float, clock: Callable[[], float]) -> None:
        self._ttl_s = ttl_s
        self._clock = clock
        self._current = secrets.token_bytes(_COOKIE_SECRET_BYTES)
        self._previous: bytes | None = None
        self._rotated_at = clock()

    def _rotate_if_due(self) -> None:
        now = self._clock()
        if now - self._rotated_at >= self._ttl_s:
            # Two periods gone: the previous secret is too old to keep as well.
            stale = now - self._rotated_at >= 2 * self._ttl_s
            self._previous = None if stale else self._current
            self._current = secrets.token_bytes(_COOKIE_SECRET_BYTES)
            self._rotated_at = now

    @staticmethod
    def _mac(secret: bytes, address: tuple[str, int]) -> bytes:
        host, port = address
        return hmac.new(secret, f"{host}|{port}".encode(), hashlib.sha256).digest()

    def generate(self, address: tuple[str, int]) -> bytes:
        """The cookie for ``address`` under the current secret (32 bytes)."""
        self._rotate_if_due()
        return self._mac(self._current, address)

    def verify(self, address: tuple[str, int], cookie: bytes) -> bool:
        """Whether ``cookie`` is the one for ``address`` under the current or previous secret."""
        self._rotate_if_due()
        for secret in (self._current, self._previous):
            if secret is not None and hmac.compare_digest(self._mac(secret, address), cookie):
                return True
        return False


def split_records(data: bytes) -> Iterator[bytes]:
    """The DTLS records in ``data`` (what a memory BIO holds after a flight), in order.

    A trailing fragment shorter than its header says is yielded as it is (it cannot come from
    OpenSSL; the peer drops it).
    """
    offset = 0
    while offset < len(data):
        if len(data) - offset < _RECORD_HEADER_BYTES:
            yield data[offset:]
            return
        length = int.from_bytes(data[offset + 11 : offset + 13], "big")
        end = offset + _RECORD_HEADER_BYTES + length
        yield data[offset:end]
        offset = end


def pack_records(data: bytes, *, max_datagram_bytes: int) -> list[bytes]:
    """Pack the records in ``data`` into datagrams of at most ``max_datagram_bytes`` each.

    A record is never split (RFC 6347 4.1.1: a record lies in one datagram); a record larger
    than the bound gets a datagram of its own.
    """
    datagrams: list[bytes] = []
    current = b""
    for record in split_records(data):
        if current and len(current) + len(record) > max_datagram_bytes:
            datagrams.append(current)
            current = b""
        current += record
    if current:
        datagrams.append(current)
    return datagrams
