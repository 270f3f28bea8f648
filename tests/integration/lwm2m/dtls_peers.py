"""Test peers for the DTLS server: a throwaway test PKI, `openssl s_client`, a pyOpenSSL client.

The test CA's and devices' keys are files in the test's tmp folder: a TEST CA only (product keys
live in tokens).
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from OpenSSL import SSL

NOW = datetime.now(UTC)
PSK_HEX = "00112233445566778899aabbccddeeff"


@dataclass(frozen=True)
class ThrowawayPki:
    directory: Path
    ca_key: ec.EllipticCurvePrivateKey
    ca_cert: x509.Certificate

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def crl_file(self) -> Path:
        return self.directory / "crl.pem"

    def issue(self, cn: str, *, server: bool = False) -> tuple[Path, Path, x509.Certificate]:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(self.ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - timedelta(days=1))
            .not_valid_after(NOW + timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(self.ca_key, hashes.SHA256())
        )
        cert_path = self.directory / f"{cn}.pem"
        key_path = self.directory / f"{cn}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        key_path.chmod(0o600)
        return cert_path, key_path, cert

    def write_crl(self, revoked: list[x509.Certificate]) -> None:
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.ca_cert.subject)
            .last_update(NOW - timedelta(hours=1))
            .next_update(NOW + timedelta(days=7))
        )
        for cert in revoked:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(cert.serial_number)
                .revocation_date(NOW - timedelta(minutes=5))
                .build()
            )
        crl = builder.sign(self.ca_key, hashes.SHA256())
        self.crl_file.write_bytes(crl.public_bytes(serialization.Encoding.PEM))


def make_pki(directory: Path) -> ThrowawayPki:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test device CA")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=60))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    pki = ThrowawayPki(directory=directory, ca_key=key, ca_cert=cert)
    pki.ca_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pki.write_crl([])
    return pki


async def s_client(port: int, *args: str) -> asyncio.subprocess.Process:
    """`openssl s_client -dtls1_2` to 127.0.0.1:port (stopped by the caller)."""
    return await asyncio.create_subprocess_exec(
        "openssl",
        "s_client",
        "-dtls1_2",
        "-connect",
        f"127.0.0.1:{port}",
        "-quiet",
        *args,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


async def stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.kill()
    await process.wait()


class PyDtlsClient:
    """A blocking pyOpenSSL DTLS client over memory BIOs and a UDP socket (tests only)."""

    def __init__(self, port: int, *, cert: Path, key: Path, ciphers: str) -> None:
        ctx = SSL.Context(SSL.DTLS_CLIENT_METHOD)
        ctx.set_cipher_list(ciphers.encode())
        ctx.use_certificate_file(str(cert))
        ctx.use_privatekey_file(str(key))
        self.conn = SSL.Connection(ctx, None)
        self.conn.set_connect_state()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.connect(("127.0.0.1", port))
        self.sock.settimeout(5)
        self.last_sent = b""

    def flush(self) -> None:
        while True:
            try:
                data = self.conn.bio_read(65536)
            except SSL.WantReadError:
                return
            if not data:
                return
            self.last_sent = data
            self.sock.send(data)

    def step(self) -> bool:
        """One handshake step; True when done."""
        try:
            self.conn.do_handshake()
        except SSL.WantReadError:
            self.flush()
            return False
        self.flush()
        return True

    def receive(self) -> None:
        self.conn.bio_write(self.sock.recv(65536))

    def handshake(self) -> None:
        while not self.step():
            self.receive()

    def send(self, data: bytes) -> bytes:
        """Send one record; the datagram that carried it."""
        self.conn.send(data)
        self.flush()
        return self.last_sent

    def recv(self) -> bytes:
        while True:
            self.receive()
            try:
                return self.conn.recv(65536)
            except SSL.WantReadError:
                continue

    def close(self) -> None:
        self.sock.close()
