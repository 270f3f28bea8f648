"""Real notification receivers on loopback for the tests: a webhook server (HTTP or HTTPS) that
verifies signatures like a real receiver, and syslog listeners over UDP and TCP.

Each runs in a thread on a free port of 127.0.0.1 and is stopped when its ``with`` block ends.
"""

from __future__ import annotations

import datetime as dt
import http.server
import ipaddress
import socketserver
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from support.certs import cert_builder
from support.syslogparse import Syslog, parse_octet_counted, parse_rfc5424
from trustfleet.errors import VerificationFailed
from trustfleet.monitoring.notify_format import SIGNATURE_HEADER, verify_webhook

__all__ = ["WebhookReceiver", "syslog_listener", "tls_files", "webhook_receiver"]

MAX_BODY_BYTES = 64 * 1024
_CA_CN = "receiver test CA"


@dataclass
class WebhookReceiver:
    """What a webhook receiver saw; set ``now`` (unix seconds) to its simulated clock."""

    secret: bytes
    now: int
    fail_first: int = 0
    tolerance_s: int = 300
    port: int = 0
    requests: int = 0
    accepted: list[bytes] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    duplicates: int = 0
    _seen: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, body: bytes, header: str) -> int:
        """Verify one request; the status to answer."""
        import json

        with self._lock:
            self.requests += 1
            if self.requests <= self.fail_first:
                return 503
            try:
                verify_webhook(
                    self.secret, body, header, now=self.now, tolerance_s=self.tolerance_s
                )
            except VerificationFailed as exc:
                self.refused.append(exc.code or "?")
                return 401
            event_id = json.loads(body)["event_id"]
            if event_id in self._seen:  # a retry of one already accepted
                self.duplicates += 1
                return 200
            self._seen.add(event_id)
            self.accepted.append(body)
            return 204


def _handler(receiver: WebhookReceiver) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # http.server's name
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(min(length, MAX_BODY_BYTES))
            status = receiver.handle(body, self.headers.get(SIGNATURE_HEADER, ""))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@contextmanager
def webhook_receiver(
    receiver: WebhookReceiver, *, tls: tuple[Path, Path] | None = None
) -> Iterator[WebhookReceiver]:
    """Serve ``receiver`` on a free port (HTTPS with ``tls`` = (cert, key) files)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(receiver))
    if tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(tls[0]), str(tls[1]))
        server.socket = context.wrap_socket(server.socket, server_side=True)
    receiver.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _cert(
    cn: str, key: ec.EllipticCurvePrivateKey, *, issuer: str | None,
    signer: ec.EllipticCurvePrivateKey,
) -> x509.Certificate:  # fmt: skip
    now = dt.datetime.now(dt.UTC)  # TLS checks validity against the real clock
    builder = cert_builder(
        cn, key, issuer_cn=issuer, not_before=now - dt.timedelta(hours=1),
        not_after=now + dt.timedelta(days=1),
    )  # fmt: skip
    if issuer is None:
        ca = x509.BasicConstraints(ca=True, path_length=0)
        usage = x509.KeyUsage(False, False, False, False, False, True, True, False, False)
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        builder = builder.add_extension(ca, critical=True).add_extension(usage, critical=True)
        builder = builder.add_extension(ski, critical=False)
    else:
        san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(cn))])
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key())
        builder = builder.add_extension(san, critical=False).add_extension(aki, critical=False)
    return builder.sign(signer, hashes.SHA256())


def tls_files(folder: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it: (ca.pem, cert.pem, key.pem)."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert(_CA_CN, ca_key, issuer=None, signer=ca_key)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _cert("127.0.0.1", key, issuer=_CA_CN, signer=ca_key)
    paths = folder / "ca.pem", folder / "cert.pem", folder / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


@contextmanager
def syslog_listener(transport: str) -> Iterator[tuple[int, list[Syslog]]]:
    """A syslog receiver (``udp`` or ``tcp`` with octet counting); yields (port, messages)."""
    messages: list[Syslog] = []
    lock = threading.Lock()

    class Udp(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            with lock:
                messages.append(parse_rfc5424(self.request[0]))

    class Tcp(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            stream = self.rfile.read(MAX_BODY_BYTES)  # the sender closes after its frames
            with lock:
                messages.extend(parse_rfc5424(f) for f in parse_octet_counted(stream))

    server: socketserver.ThreadingUDPServer | socketserver.ThreadingTCPServer
    if transport == "udp":
        server = socketserver.ThreadingUDPServer(("127.0.0.1", 0), Udp)
    else:
        server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Tcp)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield int(server.server_address[1]), messages
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
