"""Certificate path validation for TLS peers, on cryptography's ``x509.verification``.

The server uses it to check a device's IDevID or LDevID presented as a TLS client
certificate; clients use it to check the server. cryptography applies the CA/B Forum and
RFC 5280 profile: the leaf needs the matching EKU (clientAuth or serverAuth) and a SAN, CAs
need keyCertSign and basicConstraints, every signature and validity period is checked.
Revocation is not checked here (see the CRL and OCSP modules).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Literal

from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from trustfleet.errors import InvalidInput, VerificationFailed

__all__ = ["MAX_CHAIN_DEPTH", "verify_chain"]

MAX_CHAIN_DEPTH = 3
"""The most intermediates a path may hold (TrustFleet uses one)."""


def verify_chain(
    leaf: x509.Certificate,
    *,
    intermediates: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    now: datetime,
    purpose: Literal["client", "server"],
    server_name: str | None = None,
) -> None:
    """Check that ``leaf`` chains to one of ``roots`` and suits ``purpose`` at ``now``.

    Args:
        leaf: The peer's certificate.
        intermediates: Untrusted certificates that may complete the path.
        roots: The trust anchors.
        now: The time at which every certificate must be valid.
        purpose: ``client`` (clientAuth EKU, e.g. a device) or ``server`` (serverAuth EKU).
        server_name: For ``server``, the DNS name the client connected to; defaults to the
            leaf's first DNS SAN (which then checks the path and EKU, not the name).

    Raises:
        VerificationFailed: The path does not verify; the message says why.
        InvalidInput: No root is given, or a server has no name to check.
    """
    if not roots:
        raise InvalidInput("At least one trusted root is needed.", code="pki.chain.no_roots")
    builder = PolicyBuilder().store(Store(list(roots))).time(now).max_chain_depth(MAX_CHAIN_DEPTH)
    try:
        if purpose == "client":
            builder.build_client_verifier().verify(leaf, list(intermediates))
        else:
            name = server_name or _first_dns_name(leaf)
            builder.build_server_verifier(x509.DNSName(name)).verify(leaf, list(intermediates))
    except VerificationError as exc:
        raise VerificationFailed(
            f"The {purpose} certificate does not verify: {exc}.",
            hint="Check that it was issued by a TrustFleet CA, is current and fits its use.",
            code="pki.chain.invalid",
        ) from exc


def _first_dns_name(leaf: x509.Certificate) -> str:
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = x509.SubjectAlternativeName([])
    names = san.get_values_for_type(x509.DNSName)
    if not names:
        raise VerificationFailed(
            "The server certificate has no DNS name to check.", code="pki.chain.invalid"
        )
    return names[0]
