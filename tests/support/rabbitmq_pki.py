"""A test CA of its own for the broker-harness tests: server and client certificates, CRLs.

Keys stay in memory (the CA's) or in 0600 files next to their certificates (the leaves': the
broker and the MQTT clients read files). CRLs go into a hashed CRL folder, the layout OpenSSL's
``-CRLpath`` and Erlang's ``ssl_crl_hash_dir`` read: ``<issuer name hash>.r<N>``.
"""

from __future__ import annotations

import ipaddress
import secrets
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from support.certs import cert_builder

__all__ = ["ClientCert", "TestCa", "write_hashed_crl"]

CERT_LIFETIME = timedelta(days=2)


@dataclass(frozen=True)
class ClientCert:
    """A client certificate and its key as PEM files."""

    cn: str
    cert: Path
    key: Path
    serial: int


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write_pair(folder: Path, stem: str, cert: x509.Certificate, key: bytes) -> tuple[Path, Path]:
    cert_path, key_path = folder / f"{stem}.pem", folder / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key)
    key_path.chmod(0o600)
    return cert_path, key_path


@dataclass
class TestCa:
    """A CA for broker tests: server and client certificates, CRLs.

    Args:
        folder: Where certificate, key and CRL files go.
        name: The CA's common name.
    """

    folder: Path
    name: str
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    revoked: dict[int, datetime] = field(default_factory=dict)

    __test__ = False  # not a test class

    def __post_init__(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.key = ec.generate_private_key(ec.SECP256R1())
        ski = x509.SubjectKeyIdentifier.from_public_key(self.key.public_key())
        self.cert = (
            cert_builder(
                self.name,
                self.key,
                not_before=self.now - timedelta(hours=1),
                not_after=self.now + CERT_LIFETIME,
            )
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_ca_usage(), critical=True)
            .add_extension(ski, critical=False)
            .sign(self.key, hashes.SHA256())
        )
        self.ca_file = self.folder / f"{self.name}.ca.pem"
        self.ca_file.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        self.crl_dir = self.folder / "crl"

    def _issue(
        self, cn: str, *, usage: x509.ObjectIdentifier, san: list[x509.GeneralName]
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            cert_builder(
                cn,
                key,
                issuer_cn=self.name,
                not_before=self.now - timedelta(hours=1),
                not_after=self.now + CERT_LIFETIME,
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_leaf_usage(), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
        )
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return builder.sign(self.key, hashes.SHA256()), key

    def server(self, cn: str = "localhost") -> tuple[Path, Path]:
        """A server certificate for ``localhost`` / 127.0.0.1: (cert file, key file)."""
        san: list[x509.GeneralName] = [
            x509.DNSName(cn),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        ]
        cert, key = self._issue(cn, usage=ExtendedKeyUsageOID.SERVER_AUTH, san=san)
        return _write_pair(self.folder, f"server-{cn}", cert, _key_pem(key))

    def client(self, cn: str) -> ClientCert:
        """A client certificate named ``CN=<cn>``."""
        cert, key = self._issue(cn, usage=ExtendedKeyUsageOID.CLIENT_AUTH, san=[])
        cert_path, key_path = _write_pair(self.folder, f"client-{cn}", cert, _key_pem(key))
        return ClientCert(cn=cn, cert=cert_path, key=key_path, serial=cert.serial_number)

    def crl(self) -> x509.CertificateRevocationList:
        """A new CRL listing every serial revoked so far (``revoked``)."""
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.cert.subject)
            .last_update(datetime.now(UTC) - timedelta(minutes=5))
            .next_update(datetime.now(UTC) + timedelta(days=1))
            .add_extension(x509.CRLNumber(secrets.randbits(63)), critical=False)
        )
        for serial, when in self.revoked.items():
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when).build()
            )
        return builder.sign(self.key, hashes.SHA256())

    def publish_crl(self, *, revoke: int | None = None) -> Path:
        """Sign a new CRL (revoking serial ``revoke`` too) into the hashed CRL folder."""
        if revoke is not None:
            self.revoked.setdefault(revoke, datetime.now(UTC) - timedelta(seconds=5))
        return write_hashed_crl(self.crl_dir, self.crl().public_bytes(serialization.Encoding.PEM))


def _ca_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
        encipher_only=False, decipher_only=False,
    )  # fmt: skip


def _leaf_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=True, key_cert_sign=False, crl_sign=False,
        encipher_only=False, decipher_only=False,
    )  # fmt: skip


def write_hashed_crl(crl_dir: Path, crl_pem: bytes) -> Path:
    """Write a CRL into a hashed CRL folder as ``<issuer hash>.r0``, replacing the one there.

    The hash is OpenSSL's subject-name hash of the CRL's issuer (``openssl crl -hash``), which
    Erlang's ``ssl_crl_hash_dir`` computes too. The file is written next to its place and
    renamed over it, so a handshake never reads half a CRL.

    Returns:
        The CRL file's path.

    Raises:
        RuntimeError: openssl could not read the CRL.
    """
    result = subprocess.run(
        ["openssl", "crl", "-hash", "-noout"],
        input=crl_pem,
        capture_output=True,
        check=False,
        timeout=30,
    )
    issuer_hash = result.stdout.decode().strip()
    if result.returncode != 0 or len(issuer_hash) != 8:
        raise RuntimeError(f"openssl crl -hash failed: {result.stderr.decode(errors='replace')}")
    crl_dir.mkdir(parents=True, exist_ok=True)
    target = crl_dir / f"{issuer_hash}.r0"
    staging = crl_dir / f".{issuer_hash}.tmp"
    staging.write_bytes(crl_pem)
    staging.replace(target)
    return target
