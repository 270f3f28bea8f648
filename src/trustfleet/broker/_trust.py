"""The broker's trust in device certificates across CA generations (docs/lifecycle.md).

During a CA rollover two device CAs are trusted at once. Mosquitto reads its ``cafile`` only
when the listener starts, so a CA made while it runs reaches it through ``capath``
(``HOME/broker/trust.d``, OpenSSL's hashed directory: ``<subject hash>.0``), which OpenSSL
searches at each handshake for an issuer it has not met yet; the CRLs of every device CA are in
``crlfile``, which Mosquitto reads again on SIGHUP. A retired CA leaves ``cafile`` and
``trust.d`` (no new broker start trusts it) and keeps its final CRL in ``crlfile``: a running
Mosquitto may have met it already, and that CRL lists each of its certificates as revoked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from OpenSSL import crypto

from trustfleet.broker._config import BrokerPaths
from trustfleet.broker._files import crl_pem, write_atomic
from trustfleet.errors import Config, InvalidInput

__all__ = [
    "BrokerCa",
    "TrustFiles",
    "load_ca",
    "render_trust",
    "subject_hash",
    "trust_files",
    "write_trust",
]

_PEM = serialization.Encoding.PEM


@dataclass(frozen=True)
class BrokerCa:
    """One device CA as the broker sees it.

    Attributes:
        cert: The CA certificate.
        crl_der: Its current CRL (a retired CA: its final one), DER.
        trusted: Whether certificates it issued may connect (False: retired).
    """

    cert: x509.Certificate
    crl_der: bytes
    trusted: bool = True


@dataclass(frozen=True)
class TrustFiles:
    """The bytes of the broker's trust files.

    Attributes:
        cafile: The trusted device CAs, then the root (the anchor OpenSSL needs).
        crlfile: Every device CA's CRL, PEM (each checked against its CA).
        hashed: ``trust.d`` entries: file name (``<hash>.<n>``) to PEM.
    """

    cafile: bytes
    crlfile: bytes
    hashed: dict[str, bytes]


def subject_hash(cert: x509.Certificate) -> str:
    """OpenSSL's subject name hash of a certificate, as ``c_rehash`` names its file."""
    return f"{crypto.X509.from_cryptography(cert).subject_name_hash():08x}"


def render_trust(cas: Sequence[BrokerCa], *, root: x509.Certificate) -> TrustFiles:
    """The trust files for ``cas`` (pure but for the CRL signature checks).

    Raises:
        InvalidInput: A CRL is malformed or too large.
        VerificationFailed: A CRL is not its CA's.
    """
    trusted = [ca.cert for ca in cas if ca.trusted]
    hashed: dict[str, bytes] = {}
    for cert in [*trusted, root]:
        base = subject_hash(cert)
        n = sum(1 for name in hashed if name.startswith(base + "."))
        hashed[f"{base}.{n}"] = cert.public_bytes(_PEM)
    return TrustFiles(
        cafile=b"".join(cert.public_bytes(_PEM) for cert in [*trusted, root]),
        crlfile=b"".join(crl_pem(ca.crl_der, issuer=ca.cert) for ca in cas),
        hashed=hashed,
    )


def write_trust(files: TrustFiles, paths: BrokerPaths) -> None:
    """Write the trust files (each atomically, 0644, root's); stale ``trust.d`` entries go.

    Mosquitto reads the CRL file only on SIGHUP: the caller signals it right after
    (``Broker.reload_trust``). A CA is activated well after it is published, so no device
    presents a certificate of it before its CRL is loaded.

    Raises:
        Config: A file cannot be written.
    """
    cafile, crlfile, capath = paths.cafile, paths.crlfile, paths.capath
    capath.mkdir(mode=0o755, exist_ok=True)
    capath.chmod(0o755)
    write_atomic(crlfile, files.crlfile, mode=0o644)
    for name, pem in files.hashed.items():
        write_atomic(capath / name, pem, mode=0o644)
    for stale in capath.iterdir():
        if stale.name not in files.hashed:
            stale.unlink(missing_ok=True)
    write_atomic(cafile, files.cafile, mode=0o644)


def trust_files(
    paths: BrokerPaths, *, crl_der: bytes | None, trust: Sequence[BrokerCa]
) -> TrustFiles:
    """The trust files for ``trust`` (or, for a home with one device CA, its CRL ``crl_der``).

    Raises:
        InvalidInput: Neither was given, or a CRL is malformed.
        VerificationFailed: A CRL is not its CA's.
        Config: A CA certificate of the home cannot be read.
    """
    if not trust:
        if crl_der is None:
            raise InvalidInput("Give the device CA's CRL.", code="broker.crl.missing")
        trust = [BrokerCa(cert=load_ca(paths.device_ca), crl_der=crl_der)]
    return render_trust(trust, root=load_ca(paths.root_ca))


def load_ca(path: Path) -> x509.Certificate:
    """A CA certificate of the home (PEM).

    Raises:
        Config: It cannot be read.
    """
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise Config(f"Cannot read the CA certificate {path}.", code="broker.device_ca") from exc
