"""The certificate authority logic of TrustFleet: pure functions of inputs and ``now``.

Profiles, issuance (root, intermediates, IDevID, LDevID, TLS server), CSR policy, EST message
handling, CRLs, an OCSP responder and path validation. Nothing here reads files, the network
or the database; CA keys may live in a PKCS#11 token (only ``sign`` and ``public_key`` are
called).
"""

from trustfleet.pki.chain import MAX_CHAIN_DEPTH, verify_chain
from trustfleet.pki.crl import REASONS, RevokedEntry, build_crl, parse_reason
from trustfleet.pki.csr import CsrPolicy, check_csr
from trustfleet.pki.est import (
    CONTENT_TYPE_CERTS_ONLY,
    CONTENT_TYPE_CSR,
    CONTENT_TYPE_PKCS7,
    certs_only,
    parse_certs_only,
    parse_csr_body,
)
from trustfleet.pki.issue import (
    BACKDATE,
    IssuerContext,
    issue_ca,
    issue_device_certificate,
    issue_server_certificate,
    issue_service_certificate,
    make_root_ca,
    new_serial,
)
from trustfleet.pki.names import (
    DEVICE_ID_PATTERN,
    DEVICE_URI_PREFIX,
    device_id_from_certificate,
    device_uri,
    new_device_id,
    validate_device_id,
)
from trustfleet.pki.ocsp import CertStatusAnswer, ocsp_request_for, requested_issuer, respond
from trustfleet.pki.profiles import (
    DEVICE_CA,
    IDEVID,
    LDEVID,
    MANUFACTURING_CA,
    ROOT_CA,
    TLS_SERVER,
    CertificateProfile,
    ProfileKind,
)

__all__ = [
    "BACKDATE",
    "CONTENT_TYPE_CERTS_ONLY",
    "CONTENT_TYPE_CSR",
    "CONTENT_TYPE_PKCS7",
    "DEVICE_CA",
    "DEVICE_ID_PATTERN",
    "DEVICE_URI_PREFIX",
    "IDEVID",
    "LDEVID",
    "MANUFACTURING_CA",
    "MAX_CHAIN_DEPTH",
    "REASONS",
    "ROOT_CA",
    "TLS_SERVER",
    "CertStatusAnswer",
    "CertificateProfile",
    "CsrPolicy",
    "IssuerContext",
    "ProfileKind",
    "RevokedEntry",
    "build_crl",
    "certs_only",
    "check_csr",
    "device_id_from_certificate",
    "device_uri",
    "issue_ca",
    "issue_device_certificate",
    "issue_server_certificate",
    "issue_service_certificate",
    "make_root_ca",
    "new_device_id",
    "new_serial",
    "ocsp_request_for",
    "parse_certs_only",
    "parse_csr_body",
    "parse_reason",
    "requested_issuer",
    "respond",
    "validate_device_id",
    "verify_chain",
]
