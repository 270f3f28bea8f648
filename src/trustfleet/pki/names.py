"""Device identifiers and how they appear in certificates.

A device id is 8 to 64 characters of ``[a-z0-9-]``. In every device certificate (IDevID and
LDevID) it is both the subject common name and a SAN URI ``urn:trustfleet:device:<id>``; the
two must agree.
"""

from __future__ import annotations

import base64
import re
import secrets

from cryptography import x509
from cryptography.x509.oid import NameOID

from trustfleet.errors import InvalidInput, VerificationFailed

__all__ = [
    "DEVICE_ID_PATTERN",
    "DEVICE_URI_PREFIX",
    "device_id_from_certificate",
    "device_uri",
    "new_device_id",
    "validate_device_id",
]

DEVICE_ID_PATTERN = re.compile(r"[a-z0-9-]{8,64}")
"""What a device id looks like (match it with ``fullmatch``)."""

DEVICE_URI_PREFIX = "urn:trustfleet:device:"
"""The prefix of the SAN URI that names a device."""

_RANDOM_BYTES = 10  # 80 bits -> 16 base32 characters


def validate_device_id(device_id: str) -> str:
    """Check that a string is a well-formed device id.

    Args:
        device_id: The candidate id.

    Returns:
        The same id, unchanged.

    Raises:
        InvalidInput: The id is not 8 to 64 characters of ``[a-z0-9-]``.
    """
    if not isinstance(device_id, str) or DEVICE_ID_PATTERN.fullmatch(device_id) is None:
        raise InvalidInput(
            "The device id must be 8 to 64 characters of lowercase letters, digits and '-'.",
            hint="Use an id such as 'dev-7k2m4q9x3n5p8r1t'.",
            code="pki.device_id.invalid",
        )
    return device_id


def device_uri(device_id: str) -> str:
    """The SAN URI that names a device: ``urn:trustfleet:device:<id>``.

    Args:
        device_id: A well-formed device id.

    Returns:
        The URI.

    Raises:
        InvalidInput: The id is malformed.
    """
    return DEVICE_URI_PREFIX + validate_device_id(device_id)


def new_device_id(prefix: str = "dev") -> str:
    """A fresh random device id, not guessable from other ids.

    Args:
        prefix: A short prefix, joined to 16 random base32 characters with ``-``.

    Returns:
        The new id, e.g. ``dev-7k2m4q9x3n5p8r1t``.

    Raises:
        InvalidInput: The prefix would make the id malformed.
    """
    token = base64.b32encode(secrets.token_bytes(_RANDOM_BYTES)).decode("ascii").lower()
    return validate_device_id(f"{prefix}-{token}")


def device_id_from_certificate(cert: x509.Certificate) -> str:
    """The device id a device certificate names.

    Args:
        cert: An IDevID or LDevID certificate.

    Returns:
        The device id.

    Raises:
        VerificationFailed: The common name or the device URI is missing, repeated, malformed,
            or the two disagree.
    """
    try:
        cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except (x509.ExtensionNotFound, ValueError) as exc:
        raise _not_a_device("it has no subject alternative name") from exc
    uris = [
        u
        for u in san.value.get_values_for_type(x509.UniformResourceIdentifier)
        if u.startswith(DEVICE_URI_PREFIX)
    ]
    if len(cns) != 1 or len(uris) != 1:
        raise _not_a_device("it needs exactly one common name and one device URI")
    cn = cns[0].value
    if not isinstance(cn, str) or DEVICE_ID_PATTERN.fullmatch(cn) is None:
        raise _not_a_device("its common name is not a device id")
    if uris[0] != DEVICE_URI_PREFIX + cn:
        raise _not_a_device("its common name and device URI disagree")
    return cn


def _not_a_device(reason: str) -> VerificationFailed:
    return VerificationFailed(
        f"The certificate does not name a device: {reason}.",
        code="pki.device_id.mismatch",
    )
