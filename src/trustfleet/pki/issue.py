"""Issuing certificates: the root, the intermediates, device identities and TLS servers.

Pure: no I/O, time is the ``now`` parameter. The signing key is any
``ec.EllipticCurvePrivateKey``; only its ``sign`` and ``public_key`` are used, so a
PKCS#11-backed key signs inside its token.

TLS server certificates (HTTPS API, MQTT broker) are issued by the device CA. Devices trust
the root, so either intermediate would chain; the device CA is already online for EST, while
the manufacturing CA lives on the factory line, and a third online CA would only add one more
key to guard without separating anything an attacker with the service host could not reach.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

from trustfleet.errors import Config, InvalidInput
from trustfleet.pki import _keys
from trustfleet.pki.names import DEVICE_ID_PATTERN, device_uri, validate_device_id
from trustfleet.pki.profiles import ROOT_CA, TLS_SERVER, CertificateProfile, ProfileKind

__all__ = [
    "BACKDATE",
    "IssuerContext",
    "issue_ca",
    "issue_device_certificate",
    "issue_server_certificate",
    "issue_service_certificate",
    "make_root_ca",
    "new_serial",
]

BACKDATE = timedelta(minutes=5)
"""How far notBefore is set before ``now``, to tolerate clock skew on devices."""

_MAX_NAME_CHARS = 64  # ub-common-name and ub-organization-name, RFC 5280 appendix A
_DNS_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_DNS_NAME = re.compile(rf"(?=.{{1,253}}\Z)(?:{_DNS_LABEL}\.)*{_DNS_LABEL}")
_SERVICE_NAME = re.compile(r"[A-Za-z0-9._:-]{1,64}")

_SERVICE_CLIENT = CertificateProfile(
    name="service-client",
    kind=ProfileKind.SERVER,
    validity=timedelta(days=397),
    key_usage=x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    ),
    extended_key_usages=(ExtendedKeyUsageOID.CLIENT_AUTH,),
    path_length=None,
)
"""A fleet service's client certificate (MQTT ingest): TLS client, never a device id."""


@dataclass(frozen=True)
class IssuerContext:
    """A CA ready to sign: its certificate, its key and the URLs it publishes.

    Attributes:
        cert: The CA certificate.
        key: The CA private key (software or token-backed).
        crl_url: Where the CA's CRL is published, put into issued certificates' CRL DP.
        ocsp_url: The CA's OCSP responder, put into issued certificates' AIA.

    Raises:
        Config: The certificate is not a CA certificate or does not match the key.
    """

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    crl_url: str | None = None
    ocsp_url: str | None = None

    def __post_init__(self) -> None:
        raw = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        if self.key.public_key().public_bytes(*raw) != self.cert.public_key().public_bytes(*raw):
            raise Config(
                "The CA key does not belong to the CA certificate.",
                hint="Check the key label configured for this CA.",
                code="pki.issuer.key_mismatch",
            )
        try:
            constraints = self.cert.extensions.get_extension_for_class(x509.BasicConstraints)
        except x509.ExtensionNotFound:
            constraints = None
        if constraints is None or not constraints.value.ca:
            raise Config(
                "The issuer certificate is not a CA certificate.", code="pki.issuer.not_ca"
            )


def new_serial() -> int:
    """A fresh certificate serial: 128 random bits below a fixed high bit.

    The fixed bit 128 keeps every serial positive, 129 bits long (17 DER octets, within
    RFC 5280's 20) and never short, whatever the random bits are.
    """
    return secrets.randbits(128) | (1 << 128)


def make_root_ca(
    *,
    key: ec.EllipticCurvePrivateKey,
    organization: str,
    now: datetime,
    validity: timedelta | None = None,
) -> x509.Certificate:
    """Create the self-signed root CA certificate.

    Args:
        key: The root key (P-256 or P-384).
        organization: The organization named in the subject.
        now: The current time (timezone-aware).
        validity: The lifetime; defaults to the ROOT_CA profile's.

    Returns:
        The root certificate.

    Raises:
        InvalidInput: A name is malformed, ``now`` is naive or the key type is refused.
    """
    _check_now(now)
    common_name = _check_text(f"{_check_text(organization, 'organization')} Root CA", "root name")
    subject = _name(common_name, organization)
    lifetime = ROOT_CA.validity if validity is None else validity
    if lifetime <= timedelta(0):
        raise InvalidInput("The validity must be positive.", code="pki.validity.invalid")
    public_key = key.public_key()
    not_before = now - BACKDATE
    builder = _base_builder(
        subject=subject,
        issuer_name=subject,
        public_key=public_key,
        not_before=not_before,
        not_after=not_before + lifetime,
    )
    builder = _add_profile(builder, ROOT_CA)
    return builder.sign(key, _keys.signature_hash(key))


def issue_ca(
    *,
    issuer: IssuerContext,
    public_key: CertificatePublicKeyTypes,
    common_name: str,
    organization: str,
    profile: CertificateProfile,
    now: datetime,
    validity: timedelta | None = None,
) -> x509.Certificate:
    """Issue an intermediate CA certificate (manufacturing CA or device CA).

    Args:
        issuer: The root CA.
        public_key: The intermediate's public key (P-256 or P-384).
        common_name: The intermediate's common name.
        organization: The organization named in the subject.
        profile: MANUFACTURING_CA or DEVICE_CA.
        now: The current time.
        validity: The lifetime; defaults to the profile's.

    Returns:
        The intermediate certificate.

    Raises:
        InvalidInput: The profile is not an intermediate profile, a name is malformed, the
            key type is refused or the issuer is not valid at ``now``.
    """
    _check_profile(profile, ProfileKind.INTERMEDIATE)
    _keys.check_ca_key(public_key)
    subject = _name(_check_text(common_name, "common name"), organization)
    return _issue(
        issuer=issuer, subject=subject, public_key=public_key, profile=profile, now=now,
        validity=validity, san=None,
    )  # fmt: skip


def issue_device_certificate(
    *,
    issuer: IssuerContext,
    public_key: CertificatePublicKeyTypes,
    device_id: str,
    profile: CertificateProfile,
    organization: str,
    now: datetime,
    validity: timedelta | None = None,
    model: str | None = None,
) -> x509.Certificate:
    """Issue a device identity certificate (IDevID or LDevID).

    The subject is ``CN=<device id>, O=<organization>``; an IDevID also carries the device id
    as ``serialNumber`` (IEEE 802.1AR) and the model, if given, as ``OU``. The SAN holds the
    URI ``urn:trustfleet:device:<id>``.

    Args:
        issuer: The manufacturing CA (IDevID) or the device CA (LDevID).
        public_key: The device's public key.
        device_id: The device id.
        profile: IDEVID or LDEVID.
        organization: The organization named in the subject.
        now: The current time.
        validity: The lifetime; defaults to the profile's (30 days for an LDevID).
        model: The device model, recorded in the subject (optional).

    Returns:
        The device certificate.

    Raises:
        InvalidInput: The id, a name, the profile or the key type is refused, or the issuer is
            not valid at ``now``.
    """
    _check_profile(profile, ProfileKind.DEVICE)
    validate_device_id(device_id)
    _keys.check_subject_key(public_key)
    extra: list[x509.NameAttribute[str]] = []
    if model is not None:
        extra.append(
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, _check_text(model, "model"))
        )
    if profile.name == "idevid":
        extra.append(x509.NameAttribute(NameOID.SERIAL_NUMBER, device_id))
    subject = _name(device_id, organization, extra=extra)
    san = x509.SubjectAlternativeName([x509.UniformResourceIdentifier(device_uri(device_id))])
    return _issue(
        issuer=issuer, subject=subject, public_key=public_key, profile=profile, now=now,
        validity=validity, san=san,
    )  # fmt: skip


def issue_server_certificate(
    *,
    issuer: IssuerContext,
    public_key: CertificatePublicKeyTypes,
    common_name: str,
    dns_names: Sequence[str],
    ip_addresses: Sequence[ipaddress.IPv4Address | ipaddress.IPv6Address],
    now: datetime,
    validity: timedelta | None = None,
) -> x509.Certificate:
    """Issue a TLS server certificate (HTTPS API or MQTT broker).

    Args:
        issuer: The device CA (see the module docstring for why).
        public_key: The server's public key.
        common_name: The subject common name (clients match the SAN, not this).
        dns_names: DNS names for the SAN (lowercase ASCII, A-labels for IDNs).
        ip_addresses: IP addresses for the SAN.
        now: The current time.
        validity: The lifetime; defaults to 90 days.

    Returns:
        The server certificate.

    Raises:
        InvalidInput: No name is given, a DNS name is malformed, the key type is refused or
            the issuer is not valid at ``now``.
    """
    _keys.check_subject_key(public_key)
    for dns_name in dns_names:
        if _DNS_NAME.fullmatch(dns_name) is None:
            raise InvalidInput(
                f"{dns_name!r} is not a valid DNS name.", code="pki.dns_name.invalid"
            )
    if not dns_names and not ip_addresses:
        raise InvalidInput(
            "A server certificate needs a DNS name or an IP address.", code="pki.san.empty"
        )
    general_names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_names]
    general_names += [x509.IPAddress(ip) for ip in ip_addresses]
    subject = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, _check_text(common_name, "common name"))]
    )
    return _issue(
        issuer=issuer, subject=subject, public_key=public_key, profile=TLS_SERVER, now=now,
        validity=validity, san=x509.SubjectAlternativeName(general_names),
    )  # fmt: skip


def issue_service_certificate(
    *,
    issuer: IssuerContext,
    public_key: CertificatePublicKeyTypes,
    identity: str,
    organization: str,
    now: datetime,
    validity: timedelta | None = None,
) -> x509.Certificate:
    """Issue a fleet service's TLS client certificate (e.g. the MQTT ingest identity).

    The subject is ``CN=<identity>, O=<organization>``; the broker takes the CN as the MQTT
    username. The identity can never be a device id, so an enrolled device is never a service.

    Args:
        issuer: The device CA (the broker's trust anchor for clients).
        public_key: The service's public key (in the service token).
        identity: The service identity, e.g. ``svc.ingest``.
        organization: The organization named in the subject.
        now: The current time.
        validity: The lifetime; defaults to 397 days.

    Returns:
        The client certificate.

    Raises:
        InvalidInput: The identity looks like a device id or is malformed, a name or the key
            type is refused, or the issuer is not valid at ``now``.
    """
    if not _SERVICE_NAME.fullmatch(identity) or DEVICE_ID_PATTERN.fullmatch(identity):
        raise InvalidInput(
            f"{identity!r} cannot be a service identity.",
            hint="Use 1-64 characters of [A-Za-z0-9._:-] with a '.', such as 'svc.ingest'.",
            code="pki.service_identity.invalid",
        )
    _keys.check_subject_key(public_key)
    return _issue(
        issuer=issuer, subject=_name(identity, organization), public_key=public_key,
        profile=_SERVICE_CLIENT, now=now, validity=validity, san=None,
    )  # fmt: skip


def _issue(
    *,
    issuer: IssuerContext,
    subject: x509.Name,
    public_key: CertificatePublicKeyTypes,
    profile: CertificateProfile,
    now: datetime,
    validity: timedelta | None,
    san: x509.SubjectAlternativeName | None,
) -> x509.Certificate:
    not_before, not_after = _validity(
        issuer.cert, now, profile.validity if validity is None else validity
    )
    builder = _base_builder(
        subject=subject,
        issuer_name=issuer.cert.subject,
        public_key=public_key,
        not_before=not_before,
        not_after=not_after,
    )
    builder = _add_profile(builder, profile)
    builder = builder.add_extension(_keys.authority_key_identifier(issuer.cert), critical=False)
    if san is not None:
        builder = builder.add_extension(san, critical=False)
    if issuer.crl_url is not None:
        uri = x509.UniformResourceIdentifier(issuer.crl_url)
        point = x509.DistributionPoint([uri], relative_name=None, reasons=None, crl_issuer=None)
        builder = builder.add_extension(x509.CRLDistributionPoints([point]), critical=False)
    if issuer.ocsp_url is not None:
        access = x509.AccessDescription(
            AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(issuer.ocsp_url)
        )
        builder = builder.add_extension(x509.AuthorityInformationAccess([access]), critical=False)
    return builder.sign(issuer.key, _keys.signature_hash(issuer.key))


def _base_builder(
    *,
    subject: x509.Name,
    issuer_name: x509.Name,
    public_key: CertificatePublicKeyTypes,
    not_before: datetime,
    not_after: datetime,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(public_key)
        .serial_number(new_serial())
        .not_valid_before(not_before)  # encoded in whole seconds (RFC 5280 §4.1.2.5)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def _add_profile(
    builder: x509.CertificateBuilder, profile: CertificateProfile
) -> x509.CertificateBuilder:
    builder = builder.add_extension(
        x509.BasicConstraints(ca=profile.is_ca, path_length=profile.path_length), critical=True
    ).add_extension(profile.key_usage, critical=True)
    if profile.extended_key_usages:
        eku = x509.ExtendedKeyUsage(list(profile.extended_key_usages))
        builder = builder.add_extension(eku, critical=False)
    return builder


def _validity(
    issuer_cert: x509.Certificate, now: datetime, validity: timedelta
) -> tuple[datetime, datetime]:
    _check_now(now)
    if validity <= timedelta(0):
        raise InvalidInput("The validity must be positive.", code="pki.validity.invalid")
    issuer_start, issuer_end = issuer_cert.not_valid_before_utc, issuer_cert.not_valid_after_utc
    if not issuer_start <= now < issuer_end:
        raise InvalidInput(
            "The issuing CA is not valid at this time.",
            hint="Renew the CA or check the clock.",
            code="pki.issuer.not_valid",
        )
    return max(now - BACKDATE, issuer_start), min(now + validity, issuer_end)


def _check_now(now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise InvalidInput("The time must be timezone-aware (UTC).", code="pki.time.naive")


def _check_profile(profile: CertificateProfile, kind: ProfileKind) -> None:
    if profile.kind is not kind:
        raise InvalidInput(
            f"The profile {profile.name!r} cannot be used here ({kind.value} profile needed).",
            code="pki.profile.wrong",
        )


def _check_text(text: str, what: str) -> str:
    if not text or len(text) > _MAX_NAME_CHARS or not text.isprintable() or text != text.strip():
        raise InvalidInput(
            f"The {what} must be 1 to {_MAX_NAME_CHARS} printable characters without outer spaces.",
            code="pki.name.invalid",
        )
    return text


def _name(
    common_name: str, organization: str, *, extra: Sequence[x509.NameAttribute[str]] = ()
) -> x509.Name:
    attributes = [
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, _check_text(organization, "organization")),
        *extra,
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ]
    return x509.Name(attributes)
