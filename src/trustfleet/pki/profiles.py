"""Certificate profiles of the TrustFleet hierarchy.

::

    root CA (offline, pathLen 1)
    ├── manufacturing CA (pathLen 0) ── IDevID (factory identity, IEEE 802.1AR)
    └── device CA (pathLen 0) ───────── LDevID (operational identity, via EST)
                                    └── TLS server (API, MQTT broker)

The root carries ``pathLenConstraint 1``: the hierarchy is exactly two tiers of CAs, so a
misissued intermediate without its own constraint still cannot grow a third tier. Changing
the shape takes a root ceremony, which is the point.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import timedelta

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

__all__ = [
    "DEVICE_CA",
    "IDEVID",
    "LDEVID",
    "MANUFACTURING_CA",
    "ROOT_CA",
    "TLS_SERVER",
    "CertificateProfile",
    "ProfileKind",
]


class ProfileKind(enum.Enum):
    """Where in the hierarchy a profile's certificates sit."""

    ROOT = "root"
    INTERMEDIATE = "intermediate"
    DEVICE = "device"
    SERVER = "server"


@dataclass(frozen=True)
class CertificateProfile:
    """What a certificate of one kind contains.

    Attributes:
        name: A short name for logs and errors.
        kind: Where the certificate sits in the hierarchy.
        validity: The default lifetime (always clamped to the issuer's notAfter).
        key_usage: The keyUsage extension (always critical).
        extended_key_usages: The EKU purposes; empty means no EKU extension (CAs).
        path_length: The pathLenConstraint of a CA; ``None`` for end entities.
    """

    name: str
    kind: ProfileKind
    validity: timedelta
    key_usage: x509.KeyUsage
    extended_key_usages: tuple[x509.ObjectIdentifier, ...]
    path_length: int | None

    @property
    def is_ca(self) -> bool:
        """Whether certificates of this profile are CA certificates."""
        return self.kind in (ProfileKind.ROOT, ProfileKind.INTERMEDIATE)


def _key_usage(*, signature: bool, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


_PATH_LENGTH: dict[ProfileKind, int] = {ProfileKind.ROOT: 1, ProfileKind.INTERMEDIATE: 0}
"""pathLenConstraint by kind: exactly two tiers of CAs (see the module docstring)."""
_PURPOSE: dict[ProfileKind, x509.ObjectIdentifier] = {
    ProfileKind.DEVICE: ExtendedKeyUsageOID.CLIENT_AUTH,
    ProfileKind.SERVER: ExtendedKeyUsageOID.SERVER_AUTH,
}
"""The one EKU purpose of an end entity, by kind (CAs carry no EKU)."""


def _profile(name: str, *, kind: ProfileKind, validity: timedelta) -> CertificateProfile:
    """A profile whose extensions follow from its place in the hierarchy.

    A CA certifies and signs CRLs; every certificate but the root's also has
    digitalSignature (an intermediate signs its own OCSP responses, RFC 5280 §4.2.1.3; the
    root signs only CA certificates and CRLs).
    """
    purpose = _PURPOSE.get(kind)
    return CertificateProfile(
        name=name,
        kind=kind,
        validity=validity,
        key_usage=_key_usage(
            signature=kind is not ProfileKind.ROOT,
            cert_sign=kind in (ProfileKind.ROOT, ProfileKind.INTERMEDIATE),
        ),
        extended_key_usages=() if purpose is None else (purpose,),
        path_length=_PATH_LENGTH.get(kind),
    )


_YEAR = timedelta(days=365)

ROOT_CA = _profile("root-ca", kind=ProfileKind.ROOT, validity=20 * _YEAR)
"""The self-signed root; it signs only CA certificates and CRLs."""

MANUFACTURING_CA = _profile("manufacturing-ca", kind=ProfileKind.INTERMEDIATE, validity=10 * _YEAR)
"""The factory CA that issues IDevIDs."""

DEVICE_CA = _profile("device-ca", kind=ProfileKind.INTERMEDIATE, validity=10 * _YEAR)
"""The online CA that issues LDevIDs through EST and the service's TLS server certificates."""

# IEEE 802.1AR: an IDevID lives as long as the device; clamped to the manufacturing CA.
IDEVID = _profile("idevid", kind=ProfileKind.DEVICE, validity=20 * _YEAR)
"""The factory identity of a device (IEEE 802.1AR IDevID)."""

LDEVID = _profile("ldevid", kind=ProfileKind.DEVICE, validity=timedelta(days=30))
"""The operational identity of a device (LDevID), renewed over EST."""

TLS_SERVER = _profile("tls-server", kind=ProfileKind.SERVER, validity=timedelta(days=90))
"""A TLS 1.3 server certificate (HTTPS API, MQTT broker); TLS 1.3 needs only digitalSignature."""
