"""The TLS memory-BIO pump the load generators share: pyOpenSSL over asyncio transports.

Used by `_mqttload.py` (MQTT devices and service) and `_tlsload.py` (HTTPS clients and the
bare handshake server): one handshake step, one flush of what TLS wrote, the
certificates of a PEM bundle, and the TLS 1.3-only client context both load generators start from.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from OpenSSL import SSL, crypto

__all__ = ["CHUNK", "client_context", "flush_bio", "handshake_step", "pem_certs"]

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


def client_context(*, key_pem: bytes, server_ca: Path | None, mode: int) -> SSL.Context:
    """A TLS 1.3-only client context (no tickets, no compression) holding the key ``key_pem``.

    Args:
        key_pem: The client's private key (PEM); the caller sets the matching certificate.
        server_ca: The CA bundle the server chain must verify against; None trusts any server.
        mode: The ``SSL_MODE_*`` flags to set.
    """
    ctx = SSL.Context(SSL.TLS_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_3_VERSION)
    ctx.set_options(SSL.OP_NO_TICKET | SSL.OP_NO_COMPRESSION)
    ctx.set_mode(mode)
    ctx.use_privatekey(crypto.load_privatekey(crypto.FILETYPE_PEM, key_pem))
    if server_ca is not None:
        ctx.load_verify_locations(str(server_ca))
        ctx.set_verify(SSL.VERIFY_PEER, lambda *a: bool(a[-1]))
    else:
        ctx.set_verify(SSL.VERIFY_NONE, lambda *a: True)
    return ctx
