"""The HTTPS front end on its own: TLS 1.3 only, the peer certificate in the ASGI scope, bounds.

A tiny ASGI app runs behind the real protocol (pyOpenSSL + h11 + uvloop) in a thread; the
clients are independent: Python's ssl module (system OpenSSL), `openssl s_client` and curl.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from trustfleet.server._protocol import ConnectionLimits
from trustfleet.server._serve import listen_socket, new_event_loop, serve
from trustfleet.server._tls import TlsServerConfig, make_server_context

pytestmark = pytest.mark.integration

NOW = dt.datetime.now(dt.UTC)


def _cert(
    name: str,
    key: ec.EllipticCurvePrivateKey,
    *,
    issuer: tuple[x509.Certificate, Any] | None,
    ca: bool,
) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer[0].subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(hours=1))
        .not_valid_after(NOW + dt.timedelta(days=1))
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


@dataclass
class Pki:
    ca: Path
    server_chain: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    client: x509.Certificate


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
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


async def _echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers with what it saw: method, path, body size and the client certificate."""
    message = await receive()
    tls = scope["extensions"]["tls"]
    body = json.dumps(
        {
            "method": scope["method"],
            "path": scope["path"],
            "body_bytes": len(message.get("body", b"")),
            "client_cert": (tls["client_cert_chain"] or [None])[0],
            "tls_version": tls["tls_version"],
        }
    ).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


LIMITS = ConnectionLimits(
    max_header_bytes=4096, max_body_bytes=8192, handshake_timeout_s=1.0, idle_timeout_s=1.0
)


@pytest.fixture(scope="module")
def port(pki: Pki) -> Iterator[int]:
    context = make_server_context(
        TlsServerConfig(cert_chain=pki.server_chain, key=pki.server_key, client_ca=pki.ca)
    )
    sock = listen_socket("127.0.0.1", 0, reuse_port=False)
    loop = new_event_loop()
    stop = asyncio.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(
            serve(app=_echo_app, sock=sock, context=context, limits=LIMITS, stop=stop)
        )

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    yield int(sock.getsockname()[1])
    loop.call_soon_threadsafe(stop.set)
    thread.join(timeout=5)
    loop.close()


def _client_ctx(pki: Pki, *, with_cert: bool) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    if with_cert:
        ctx.load_cert_chain(str(pki.client_cert), str(pki.client_key))
    return ctx


def _raw(
    pki: Pki, port: int, payload: bytes, *, with_cert: bool = False, read_s: float = 3.0
) -> bytes:
    ctx = _client_ctx(pki, with_cert=with_cert)
    chunks = []
    with (
        socket.create_connection(("127.0.0.1", port), timeout=read_s) as tcp,
        ctx.wrap_socket(tcp, server_hostname="localhost") as tls,
    ):
        tls.sendall(payload)
        try:
            while chunk := tls.recv(65536):
                chunks.append(chunk)
        except (TimeoutError, ssl.SSLError, ConnectionResetError):
            pass
    return b"".join(chunks)


def test_peer_certificate_reaches_the_app(pki: Pki, port: int) -> None:
    raw = _raw(
        pki, port, b"GET /x HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n", with_cert=True
    )
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    seen = json.loads(body)
    assert x509.load_pem_x509_certificate(seen["client_cert"].encode()) == pki.client
    assert seen["tls_version"] == 0x0304


def test_no_client_certificate_is_allowed_on_the_connection(pki: Pki, port: int) -> None:
    raw = _raw(pki, port, b"GET / HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n")
    assert json.loads(raw.partition(b"\r\n\r\n")[2])["client_cert"] is None


def test_keep_alive_serves_several_requests(pki: Pki, port: int) -> None:
    one = b"POST /a HTTP/1.1\r\nhost: a\r\ncontent-length: 3\r\n\r\nabc"
    last = b"GET /b HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n"
    raw = _raw(pki, port, one + one + last)
    assert raw.count(b"HTTP/1.1 200") == 3


@pytest.mark.parametrize(
    ("payload", "status"),
    [
        (b"GET / HTTP/1.1\r\nhost: a\r\nx-big: " + b"a" * 8000 + b"\r\n\r\n", b"431"),
        (b"NOT HTTP AT ALL\r\n\r\n", b"400"),
        (b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 9000\r\n\r\n", b"413"),
        (
            b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n2329\r\n"
            + b"a" * 9001,
            b"413",
        ),
        (b"GET / HTTP/1.1\r\n\r\n", b"400"),
    ],
    ids=[
        "header-too-large",
        "garbage",
        "declared-body-too-large",
        "chunked-body-too-large",
        "no-host",
    ],
)
def test_bad_requests_get_a_4xx_and_a_closed_connection(
    pki: Pki, port: int, payload: bytes, status: bytes
) -> None:
    raw = _raw(pki, port, payload)
    assert raw.split(b" ", 2)[1] == status, raw[:200]


def test_idle_connection_is_closed(pki: Pki, port: int) -> None:
    ctx = _client_ctx(pki, with_cert=False)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as tcp,
        ctx.wrap_socket(tcp, server_hostname="localhost") as tls,
    ):
        tls.sendall(b"GET / HTTP/1.1\r\nhost: a\r\n")  # never finishes its headers
        try:
            data = tls.recv(1024)
        except (ConnectionResetError, ssl.SSLError):
            data = b""
        # The server closed it: had it not, recv would raise TimeoutError after 10 s.
        assert data == b""


def test_half_open_tls_handshake_is_dropped(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as tcp:
        tcp.sendall(b"\x16\x03\x01\x00")  # the start of a ClientHello, then silence
        assert tcp.recv(1024) == b""


def test_tls_1_2_is_refused_by_openssl(pki: Pki, port: int) -> None:
    proc = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-tls1_2", "-CAfile", str(pki.ca)],
        input=b"",
        capture_output=True,
        timeout=10,
        check=False,
    )
    assert proc.returncode != 0
    assert b"alert protocol version" in proc.stderr
    assert b"Cipher is (NONE)" in proc.stdout


def test_curl_speaks_tls13_with_a_client_certificate(pki: Pki, port: int) -> None:
    proc = subprocess.run(
        [
            "curl",
            "-sS",
            "--tlsv1.3",
            "--cacert",
            str(pki.ca),
            "--cert",
            str(pki.client_cert),
            "--key",
            str(pki.client_key),
            "--data-binary",
            "hello",
            f"https://localhost:{port}/p",
        ],
        capture_output=True,
        timeout=10,
        check=True,
    )
    seen = json.loads(proc.stdout)
    assert seen["method"] == "POST"
    assert seen["body_bytes"] == 5
    assert seen["client_cert"] is not None
