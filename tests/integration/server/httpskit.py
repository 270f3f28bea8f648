"""The HTTPS front end on its own, for the protocol and abuse tests.

A throwaway PKI (a CA, a server certificate for ``localhost``, one client certificate) and
:func:`serving`: the real protocol (pyOpenSSL + h11 + uvloop) serving an ASGI app in a thread
on a free loopback port, stopped when the block ends. Clients are independent of the server
stack: Python's ``ssl`` (system OpenSSL, from :mod:`support.httpsprobe`), ``openssl s_client``
and curl.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from support.httpsprobe import raw_exchange as exchange
from support.httpsprobe import tls_context
from trustfleet.server._limits import ConnectionGate, ConnectionLimits
from trustfleet.server._serve import listen_socket, new_event_loop, serve
from trustfleet.server._tls import TlsServerConfig, make_server_context

__all__ = [
    "Pki",
    "Served",
    "client_ctx",
    "make_pki",
    "raw_exchange",
    "serving",
]


def _cert(
    name: str,
    key: ec.EllipticCurvePrivateKey,
    *,
    issuer: tuple[x509.Certificate, Any] | None,
    ca: bool,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer[0].subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False
        ).add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_chain: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    client: x509.Certificate


def make_pki(d: Path) -> Pki:
    """A CA, a server certificate for ``localhost`` and a client certificate, in ``d``."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("test ca", ca_key, issuer=None, ca=True)
    srv_key, cli_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    srv = _cert("localhost", srv_key, issuer=(ca, ca_key), ca=False)
    cli = _cert("client-0001", cli_key, issuer=(ca, ca_key), ca=False)
    (d / "ca.pem").write_bytes(_pem(ca))
    (d / "srv.pem").write_bytes(_pem(srv) + _pem(ca))
    (d / "srv.key").write_bytes(_key_pem(srv_key))
    (d / "cli.pem").write_bytes(_pem(cli))
    (d / "cli.key").write_bytes(_key_pem(cli_key))
    return Pki(d / "ca.pem", d / "srv.pem", d / "srv.key", d / "cli.pem", d / "cli.key", cli)


@dataclass(frozen=True)
class Served:
    """A server running in a thread: its port and its connection gate (counters)."""

    port: int
    gate: ConnectionGate


@contextmanager
def serving(pki: Pki, *, app: Any, limits: ConnectionLimits) -> Iterator[Served]:
    """Serve ``app`` over the real HTTPS stack on a free port of 127.0.0.1."""
    context = make_server_context(
        TlsServerConfig(cert_chain=pki.server_chain, key=pki.server_key, client_ca=pki.ca)
    )
    sock = listen_socket("127.0.0.1", 0, reuse_port=False)
    loop = new_event_loop()
    stop = asyncio.Event()
    gate = ConnectionGate(limits)

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(
            serve(app=app, sock=sock, context=context, limits=limits, stop=stop, gate=gate)
        )

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield Served(port=int(sock.getsockname()[1]), gate=gate)
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=10)
        loop.close()


def client_ctx(pki: Pki, *, with_cert: bool) -> ssl.SSLContext:
    """A client context trusting the test CA, optionally presenting the client certificate."""
    if with_cert:
        return tls_context(pki.ca, cert=pki.client_cert, key=pki.client_key)
    return tls_context(pki.ca)


def raw_exchange(
    pki: Pki, port: int, payload: bytes, *, with_cert: bool = False, read_s: float = 3.0
) -> bytes:
    """Send ``payload`` on one TLS connection and read until the server closes it."""
    return exchange(client_ctx(pki, with_cert=with_cert), port, payload, read_s=read_s)
