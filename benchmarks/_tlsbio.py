"""The TLS memory-BIO pump the load generators share: pyOpenSSL over asyncio transports.

Used by `_mqttload.py` (MQTT devices and service) and `_tlsload.py` (HTTPS clients and the
bare handshake server): one handshake step, one flush of what TLS wrote, and the
certificates of a PEM bundle.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from OpenSSL import SSL, crypto

__all__ = ["CHUNK", "flush_bio", "handshake_step", "pem_certs"]

CHUNK = 65536


def flush_bio(tls: SSL.Connection, transport: asyncio.Transport | None) -> None:
    """Write out everything TLS has queued (nothing once the transport is closing)."""
    while True:
        try:
            out = tls.bio_read(CHUNK)
        except SSL.WantReadError:
            return
        if transport is not None and not transport.is_closing():
            transport.write(out)


def handshake_step(
    tls: SSL.Connection, *, flush: Callable[[], None], fail: Callable[[str], None]
) -> bool:
    """Advance the TLS handshake with what arrived; whether it is complete.

    It flushes what the handshake wrote, and calls ``fail`` with a reason when TLS refused.
    """
    try:
        tls.do_handshake()
    except SSL.WantReadError:
        flush()
        return False
    except SSL.Error as exc:
        flush()
        fail(f"TLS handshake failed: {exc}")
        return False
    return True


def pem_certs(data: bytes) -> list[crypto.X509]:
    """The certificates of a PEM bundle, in order."""
    marker = b"-----END CERTIFICATE-----"
    return [
        crypto.load_certificate(crypto.FILETYPE_PEM, part + marker)
        for part in data.split(marker)
        if b"-----BEGIN" in part
    ]
