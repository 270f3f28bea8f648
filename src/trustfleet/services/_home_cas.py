"""The CA hierarchy of a new home (the root CA in the offline folder, the others in the home)
and its TLS server certificates.

Order (one SoftHSM2 configuration active at a time, ADR 0002): the manufacturing and device
CA keys are generated in the home's tokens ``tf-factory`` and ``tf-service`` (PINs in
``secrets/``), their sessions closed; then the offline configuration becomes active: token
``tf-root`` (its PIN given by the caller, never written to the home), the root CA key and
certificate, both intermediate certificates and the first root CRL.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from trustfleet.fileio import PRIVATE_FILE_MODE, write_atomic
from trustfleet.keystore import generate_pin, init_token, open_token, write_pin_file
from trustfleet.pki import (
    DEVICE_CA,
    MANUFACTURING_CA,
    IssuerContext,
    issue_ca,
    issue_server_certificate,
    make_root_ca,
)
from trustfleet.services._offline import ROOT_CA_LABEL, ROOT_CA_TOKEN, OfflineFolder
from trustfleet.services.ceremony import root_crl_der
from trustfleet.settings import ServerSettings

__all__ = ["HOME_CA_TOKENS", "MadeCas", "make_cas", "make_server_certs"]

HOME_CA_TOKENS = {"manufacturing": "tf-factory", "device": "tf-service"}
_CURVES = {"root": "P-384", "manufacturing": "P-256", "device": "P-256"}
_NAMES = {"manufacturing": "Manufacturing CA", "device": "Device CA"}
_PROFILES = {"manufacturing": MANUFACTURING_CA, "device": DEVICE_CA}


@dataclass(frozen=True)
class MadeCas:
    """The certificates of the new hierarchy and the first root CRL.

    Attributes:
        certs: ``root``, ``manufacturing``, ``device`` → certificate.
        root_crl: The root's CRL number 1, DER.
        root_crl_next_update: Its nextUpdate.
    """

    certs: dict[str, x509.Certificate]
    root_crl: bytes
    root_crl_next_update: datetime


def make_cas(
    settings: ServerSettings,
    *,
    module: Path,
    conf: Path,
    offline: OfflineFolder,
    offline_pins: Mapping[str, str],
    now: datetime,
) -> MadeCas:
    """Create the CA keys in their tokens and the certificates (written to ``public/``)."""
    publics = _home_ca_keys(settings, module=module, conf=conf)
    made = _offline_root(
        settings, module=module, offline=offline, pins=offline_pins, publics=publics, now=now
    )
    for name, cert in made.certs.items():
        write_atomic(
            settings.path(settings.ca[name].cert), cert.public_bytes(serialization.Encoding.PEM)
        )
    return made


def _home_ca_keys(
    settings: ServerSettings, *, module: Path, conf: Path
) -> dict[str, CertificatePublicKeyTypes]:
    publics: dict[str, CertificatePublicKeyTypes] = {}
    for name, token in HOME_CA_TOKENS.items():
        pin, so_pin = generate_pin(), generate_pin()
        write_pin_file(settings.path(f"secrets/{token}.pin"), pin)
        write_pin_file(settings.path(f"secrets/{token}.so-pin"), so_pin)
        init_token(module=module, conf=conf, label=token, so_pin=so_pin, user_pin=pin)
        with open_token(module=module, label=token, pin=pin, conf=conf) as session:
            key = session.generate_ec_key(f"{name}-ca", curve=_CURVES[name])
            publics[name] = key.public_key()
    return publics


def _offline_root(
    settings: ServerSettings,
    *,
    module: Path,
    offline: OfflineFolder,
    pins: Mapping[str, str],
    publics: dict[str, CertificatePublicKeyTypes],
    now: datetime,
) -> MadeCas:
    pin = pins[f"{ROOT_CA_TOKEN}.pin"]
    so_pin = pins[f"{ROOT_CA_TOKEN}.so-pin"]
    conf = offline.conf
    init_token(module=module, conf=conf, label=ROOT_CA_TOKEN, so_pin=so_pin, user_pin=pin)
    org = settings.pki.organization
    with open_token(module=module, label=ROOT_CA_TOKEN, pin=pin, conf=conf) as session:
        key = session.generate_ec_key(ROOT_CA_LABEL, curve=_CURVES["root"])
        root = IssuerContext(
            cert=make_root_ca(key=key, organization=org, now=now), key=key,
            crl_url=settings.crl_url("root"), ocsp_url=None,
        )  # fmt: skip
        certs = {"root": root.cert}
        for name, public in publics.items():
            certs[name] = issue_ca(
                issuer=root, public_key=public, common_name=f"{org} {_NAMES[name]}",
                organization=org, profile=_PROFILES[name], now=now,
            )  # fmt: skip
        days = settings.lifecycle.root_crl_validity_days
        crl = root_crl_der(root, revoked=[], number=1, now=now, validity_days=days)
    return MadeCas(certs=certs, root_crl=crl, root_crl_next_update=now + timedelta(days=days))


def make_server_certs(
    *,
    settings: ServerSettings,
    issuer: IssuerContext,
    dns: tuple[str, ...],
    ips: list[ipaddress.IPv4Address | ipaddress.IPv6Address],
    now: datetime,
) -> dict[str, x509.Certificate]:
    """The API's and the broker's TLS keys (files, 0600: the only keys on disk) and
    certificate chains, issued by the device CA."""
    certs: dict[str, x509.Certificate] = {}
    for name, cert_rel, key_rel in (
        ("api", settings.api.tls_cert, settings.api.tls_key),
        ("broker", settings.broker.tls_cert, settings.broker.tls_key),
    ):
        key = ec.generate_private_key(ec.SECP256R1())
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        _write_private(settings.path(key_rel), key_pem)
        cert = issue_server_certificate(
            issuer=issuer,
            public_key=key.public_key(),
            common_name=f"trustfleet-{name}",
            dns_names=list(dns),
            ip_addresses=ips,
            now=now,
            validity=timedelta(days=397),
        )
        chain = cert.public_bytes(serialization.Encoding.PEM) + issuer.cert.public_bytes(
            serialization.Encoding.PEM
        )
        write_atomic(settings.path(cert_rel), chain)
        certs[name] = cert
    return certs


def _write_private(path: Path, data: bytes) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(path, flags, PRIVATE_FILE_MODE)
    with os.fdopen(fd, "wb") as fh:
        os.fchmod(fh.fileno(), PRIVATE_FILE_MODE)
        fh.write(data)
