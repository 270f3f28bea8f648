"""OCSP responder rules (RFC 6960, RFC 8954), exactly: statuses, times, nonce and size bounds,
CertID matching, responder id, refusals.

One P-256 hierarchy per module, so the file is fast enough to run once per mutant of
``trustfleet.pki.ocsp``.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID
from pki_hierarchy import NOW, REVOKED_AT, Hierarchy, build_hierarchy, ocsp_answers

from trustfleet import pki
from trustfleet.errors import InvalidInput
from trustfleet.pki.ocsp import MAX_NONCE_BYTES

VALIDITY = timedelta(hours=4)
GOOD, REVOKED, UNKNOWN = (
    ocsp.OCSPCertStatus.GOOD,
    ocsp.OCSPCertStatus.REVOKED,
    ocsp.OCSPCertStatus.UNKNOWN,
)
MALFORMED = ocsp.OCSPResponseStatus.MALFORMED_REQUEST
UNAUTHORIZED = ocsp.OCSPResponseStatus.UNAUTHORIZED
SUCCESSFUL = ocsp.OCSPResponseStatus.SUCCESSFUL


@pytest.fixture(scope="module")
def h() -> Hierarchy:
    return build_hierarchy(ec.SECP256R1())


def _respond(
    h: Hierarchy,
    request: bytes,
    *,
    issuer: pki.IssuerContext | None = None,
    lookup: Callable[[int], pki.CertStatusAnswer] | None = None,
    **kwargs: object,
) -> ocsp.OCSPResponse:
    answers = ocsp_answers(h)
    der = pki.respond(
        request,
        issuer=issuer or h.device_ca,
        lookup=lookup or (lambda serial: answers.get(serial, pki.CertStatusAnswer.unknown())),
        now=kwargs.pop("now", NOW),  # type: ignore[arg-type]
        validity=VALIDITY,
        **kwargs,  # type: ignore[arg-type]
    )
    return ocsp.load_der_ocsp_response(der)


def _sha(algorithm: hashes.HashAlgorithm, data: bytes) -> bytes:
    return hashlib.new(algorithm.name, data).digest()


def _key_bits(cert: x509.Certificate) -> bytes:
    public_key = cert.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    return public_key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


def _verify(response: ocsp.OCSPResponse, signer: x509.Certificate) -> None:
    public_key = signer.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    assert response.signature_hash_algorithm is not None
    public_key.verify(
        response.signature, response.tbs_response_bytes, ec.ECDSA(response.signature_hash_algorithm)
    )


def _padded_request(h: Hierarchy, size: int) -> bytes:
    """A well-formed request about the LDevID, padded to exactly ``size`` bytes."""
    oid = x509.ObjectIdentifier("1.3.6.1.4.1.55555.1")
    for pad in range(size - 200, size):
        value = b"\x04\x82" + pad.to_bytes(2, "big") + b"p" * pad
        builder = ocsp.OCSPRequestBuilder().add_certificate(
            h.ldevid, h.device_ca.cert, hashes.SHA256()
        )
        builder = builder.add_extension(x509.UnrecognizedExtension(oid, value), critical=False)
        der = builder.build().public_bytes(serialization.Encoding.DER)
        if len(der) == size:
            return der
    raise AssertionError(f"no padding gives {size} bytes")


# --- signed answers ------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", [hashes.SHA1(), hashes.SHA256()], ids=["sha1", "sha256"])  # noqa: S303  (RFC 6960 CertIDs)
@pytest.mark.parametrize("which", ["good", "revoked", "unknown"])
def test_signed_answer_is_exact(
    h: Hierarchy, which: str, algorithm: hashes.SHA1 | hashes.SHA256
) -> None:
    cert = {"good": h.ldevid, "revoked": h.server, "unknown": h.idevid}[which]
    issuer_cert = h.device_ca.cert
    # The IDevID's serial is unknown to the device CA; ask with the device CA's CertID.
    name_hash = _sha(algorithm, issuer_cert.subject.public_bytes())
    key_hash = _sha(algorithm, _key_bits(issuer_cert))
    request = ocsp.OCSPRequestBuilder().add_certificate_by_hash(
        name_hash, key_hash, cert.serial_number, algorithm
    ).build().public_bytes(serialization.Encoding.DER)  # fmt: skip
    response = _respond(h, request)
    assert response.response_status is SUCCESSFUL
    assert (
        response.certificate_status is {"good": GOOD, "revoked": REVOKED, "unknown": UNKNOWN}[which]
    )
    assert response.serial_number == cert.serial_number
    assert isinstance(response.hash_algorithm, type(algorithm))
    assert response.issuer_name_hash == _sha(algorithm, issuer_cert.subject.public_bytes())
    assert response.issuer_key_hash == _sha(algorithm, _key_bits(issuer_cert))
    assert response.this_update_utc == NOW
    assert response.next_update_utc == NOW + VALIDITY
    assert response.responder_key_hash == hashlib.sha1(_key_bits(issuer_cert)).digest()  # noqa: S324
    assert response.responder_name is None
    assert response.certificates == []
    assert len(response.extensions) == 0
    if which == "revoked":
        assert response.revocation_time_utc == REVOKED_AT
        assert response.revocation_reason is x509.ReasonFlags.key_compromise
    else:
        assert response.revocation_time_utc is None
        assert response.revocation_reason is None
    _verify(response, issuer_cert)


@pytest.mark.parametrize(
    ("reason", "written"),
    [(None, None), (x509.ReasonFlags.unspecified, None),
     (x509.ReasonFlags.superseded, x509.ReasonFlags.superseded)],
    ids=["no-reason", "unspecified-omitted", "superseded"],
)  # fmt: skip
def test_revocation_reason_written(
    h: Hierarchy, reason: x509.ReasonFlags | None, written: x509.ReasonFlags | None
) -> None:
    request = pki.ocsp_request_for(h.ldevid, h.device_ca.cert)
    response = _respond(h, request, lookup=lambda _: pki.CertStatusAnswer.revoked(NOW, reason))
    assert response.certificate_status is REVOKED
    assert response.revocation_time_utc == NOW
    assert response.revocation_reason is written


def test_fractions_of_a_second_are_dropped(h: Hierarchy) -> None:
    request = pki.ocsp_request_for(h.ldevid, h.device_ca.cert)
    revoked_at = REVOKED_AT + timedelta(microseconds=999_999)
    response = _respond(
        h, request, now=NOW + timedelta(microseconds=999_999),
        lookup=lambda _: pki.CertStatusAnswer.revoked(revoked_at),
    )  # fmt: skip
    assert response.this_update_utc == NOW
    assert response.next_update_utc == NOW + VALIDITY
    assert response.revocation_time_utc == REVOKED_AT


def test_the_lookup_is_asked_about_the_requested_serial(h: Hierarchy) -> None:
    asked: list[int] = []

    def lookup(serial: int) -> pki.CertStatusAnswer:
        asked.append(serial)
        return pki.CertStatusAnswer.good()

    _respond(h, pki.ocsp_request_for(h.server, h.device_ca.cert), lookup=lookup)
    assert asked == [h.server.serial_number]


def test_idevid_answer_is_signed_by_the_manufacturing_ca(h: Hierarchy) -> None:
    request = pki.ocsp_request_for(h.idevid, h.manufacturing.cert)
    response = _respond(h, request, issuer=h.manufacturing)
    assert response.response_status is SUCCESSFUL
    assert response.certificate_status is UNKNOWN
    assert response.responder_key_hash == hashlib.sha1(_key_bits(h.manufacturing.cert)).digest()  # noqa: S324
    _verify(response, h.manufacturing.cert)


# --- nonce (RFC 8954 §2.1) -----------------------------------------------------------------


@pytest.mark.parametrize("length", [1, 32], ids=["1-octet", "32-octets"])
def test_nonce_of_1_to_32_octets_is_echoed_non_critical(h: Hierarchy, length: int) -> None:
    nonce = bytes(range(1, length + 1))
    response = _respond(h, pki.ocsp_request_for(h.ldevid, h.device_ca.cert, nonce=nonce))
    assert response.response_status is SUCCESSFUL
    assert [(ext.oid, ext.critical, ext.value) for ext in response.extensions] == [
        (x509.OCSPNonce.oid, False, x509.OCSPNonce(nonce))
    ]


@pytest.mark.parametrize("length", [0, 33], ids=["empty", "33-octets"])
def test_nonce_outside_1_to_32_octets_is_malformed(h: Hierarchy, length: int) -> None:
    request = pki.ocsp_request_for(h.ldevid, h.device_ca.cert, nonce=b"n" * length)
    assert _respond(h, request).response_status is MALFORMED


def test_nonce_bound_is_a_parameter(h: Hierarchy) -> None:
    assert MAX_NONCE_BYTES == 32
    at_bound = pki.ocsp_request_for(h.ldevid, h.device_ca.cert, nonce=b"n" * 64)
    assert _respond(h, at_bound, max_nonce_bytes=64).response_status is SUCCESSFUL
    past = pki.ocsp_request_for(h.ldevid, h.device_ca.cert, nonce=b"n" * 65)
    assert _respond(h, past, max_nonce_bytes=64).response_status is MALFORMED


# --- request size, parsing and issuer matching ---------------------------------------------


def test_request_of_8192_bytes_is_answered_and_8193_is_malformed(h: Hierarchy) -> None:
    largest, too_large = _padded_request(h, 8192), _padded_request(h, 8193)
    assert _respond(h, largest).response_status is SUCCESSFUL
    assert _respond(h, too_large).response_status is MALFORMED
    cas = {"device": h.device_ca.cert}
    assert pki.requested_issuer(largest, cas) == "device"
    assert pki.requested_issuer(too_large, cas) is None


def test_request_size_bound_is_a_parameter(h: Hierarchy) -> None:
    request = pki.ocsp_request_for(h.ldevid, h.device_ca.cert)
    assert _respond(h, request, max_bytes=len(request)).response_status is SUCCESSFUL
    assert _respond(h, request, max_bytes=len(request) - 1).response_status is MALFORMED
    cas = {"device": h.device_ca.cert}
    assert pki.requested_issuer(request, cas, max_bytes=len(request)) == "device"
    assert pki.requested_issuer(request, cas, max_bytes=len(request) - 1) is None


@pytest.mark.parametrize(
    "body",
    [b"", b"\x00\x01garbage", b"\x30\x82\x01\x00\x30"],
    ids=["empty", "garbage", "truncated"],
)
def test_unparsable_requests_are_malformed(h: Hierarchy, body: bytes) -> None:
    assert _respond(h, body).response_status is MALFORMED
    assert pki.requested_issuer(body, {"device": h.device_ca.cert}) is None


@pytest.mark.parametrize("algorithm", [hashes.SHA384(), hashes.SHA512()], ids=["sha384", "sha512"])
def test_cert_id_hash_other_than_sha1_or_sha256_is_malformed(
    h: Hierarchy, algorithm: hashes.HashAlgorithm
) -> None:
    request = pki.ocsp_request_for(h.ldevid, h.device_ca.cert)
    request = (
        ocsp.OCSPRequestBuilder()
        .add_certificate(h.ldevid, h.device_ca.cert, algorithm)
        .build()
        .public_bytes(serialization.Encoding.DER)
    )
    assert _respond(h, request).response_status is MALFORMED
    assert pki.requested_issuer(request, {"device": h.device_ca.cert}) is None


def test_certificate_of_another_ca_is_unauthorized(h: Hierarchy) -> None:
    request = pki.ocsp_request_for(h.idevid, h.manufacturing.cert)
    assert _respond(h, request).response_status is UNAUTHORIZED


def test_same_name_other_key_is_unauthorized(h: Hierarchy) -> None:
    impostor_key = ec.generate_private_key(ec.SECP256R1())
    impostor_cert = (
        x509.CertificateBuilder().subject_name(h.device_ca.cert.subject)
        .issuer_name(h.device_ca.cert.subject).public_key(impostor_key.public_key())
        .serial_number(1).not_valid_before(NOW).not_valid_after(NOW + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(impostor_key, hashes.SHA256())
    )  # fmt: skip
    impostor = pki.IssuerContext(impostor_cert, impostor_key)
    request = pki.ocsp_request_for(h.ldevid, h.device_ca.cert)
    assert _respond(h, request, issuer=impostor).response_status is UNAUTHORIZED
    assert pki.requested_issuer(request, {"impostor": impostor_cert}) is None


def test_same_key_other_name_is_unauthorized(h: Hierarchy) -> None:
    renamed = pki.make_root_ca(key=h.device_ca.key, organization="Other Org", now=NOW)
    other = pki.IssuerContext(renamed, h.device_ca.key)
    request = pki.ocsp_request_for(h.ldevid, h.device_ca.cert)
    assert _respond(h, request, issuer=other).response_status is UNAUTHORIZED
    assert pki.requested_issuer(request, {"renamed": renamed}) is None


def test_requested_issuer_names_the_ca_of_the_certificate(h: Hierarchy) -> None:
    cas = {"device": h.device_ca.cert, "manufacturing": h.manufacturing.cert}
    assert pki.requested_issuer(pki.ocsp_request_for(h.ldevid, h.device_ca.cert), cas) == "device"
    about_idevid = pki.ocsp_request_for(h.idevid, h.manufacturing.cert, algorithm=hashes.SHA1())  # noqa: S303
    assert pki.requested_issuer(about_idevid, cas) == "manufacturing"
    assert pki.requested_issuer(pki.ocsp_request_for(h.device_ca.cert, h.root.cert), cas) is None
    assert pki.requested_issuer(pki.ocsp_request_for(h.ldevid, h.device_ca.cert), {}) is None


def test_a_ca_with_a_non_ec_key_matches_nothing(h: Hierarchy) -> None:
    # CA keys are EC; an Ed25519 "CA" is never named, even for a request about its own name
    # with the hash of an empty key (what a missing key encoding would hash).
    key = ed25519.Ed25519PrivateKey.generate()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Edwards CA")])
    edwards_ca = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(1)
        .not_valid_before(NOW).not_valid_after(NOW + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, None)
    )  # fmt: skip
    sha256 = hashes.SHA256()
    for key_bits in (b"", key.public_key().public_bytes_raw()):
        request = ocsp.OCSPRequestBuilder().add_certificate_by_hash(
            _sha(sha256, name.public_bytes()), _sha(sha256, key_bits), 7, sha256
        ).build().public_bytes(serialization.Encoding.DER)  # fmt: skip
        assert pki.requested_issuer(request, {"edwards": edwards_ca}) is None


# --- the request builder -------------------------------------------------------------------


def test_request_builder_defaults_to_sha256_without_nonce(h: Hierarchy) -> None:
    request = ocsp.load_der_ocsp_request(pki.ocsp_request_for(h.ldevid, h.device_ca.cert))
    assert isinstance(request.hash_algorithm, hashes.SHA256)
    assert request.serial_number == h.ldevid.serial_number
    assert request.issuer_name_hash == _sha(
        hashes.SHA256(), h.device_ca.cert.subject.public_bytes()
    )
    assert request.issuer_key_hash == _sha(hashes.SHA256(), _key_bits(h.device_ca.cert))
    assert len(request.extensions) == 0


def test_request_builder_uses_the_given_hash_and_nonce(h: Hierarchy) -> None:
    der = pki.ocsp_request_for(
        h.ldevid,
        h.device_ca.cert,
        algorithm=hashes.SHA1(),  # noqa: S303  (RFC 6960 CertIDs)
        nonce=b"0123456789abcdef",
    )
    request = ocsp.load_der_ocsp_request(der)
    assert isinstance(request.hash_algorithm, hashes.SHA1)
    assert [(ext.oid, ext.critical, ext.value) for ext in request.extensions] == [
        (x509.OCSPNonce.oid, False, x509.OCSPNonce(b"0123456789abcdef"))
    ]


# --- what the CA knows ---------------------------------------------------------------------


def test_cert_status_answer_constructors() -> None:
    assert pki.CertStatusAnswer.good() == pki.CertStatusAnswer(GOOD, None, None)
    assert pki.CertStatusAnswer.unknown() == pki.CertStatusAnswer(UNKNOWN, None, None)
    revoked = pki.CertStatusAnswer.revoked(REVOKED_AT, x509.ReasonFlags.superseded)
    assert revoked == pki.CertStatusAnswer(REVOKED, REVOKED_AT, x509.ReasonFlags.superseded)
    assert pki.CertStatusAnswer.revoked(REVOKED_AT) == pki.CertStatusAnswer(REVOKED, REVOKED_AT)
    with pytest.raises(dataclasses.FrozenInstanceError):
        revoked.status = GOOD  # type: ignore[misc]


@pytest.mark.parametrize(
    ("status", "revoked_at", "reason"),
    [(GOOD, REVOKED_AT, None), (UNKNOWN, REVOKED_AT, None), (REVOKED, None, None),
     (REVOKED, None, x509.ReasonFlags.key_compromise), (GOOD, None, x509.ReasonFlags.superseded),
     (UNKNOWN, None, x509.ReasonFlags.unspecified)],
    ids=["good-with-time", "unknown-with-time", "revoked-without-time",
         "revoked-with-reason-only", "good-with-reason", "unknown-with-reason"],
)  # fmt: skip
def test_cert_status_answer_refuses_inconsistent_fields(
    status: ocsp.OCSPCertStatus, revoked_at: object, reason: x509.ReasonFlags | None
) -> None:
    with pytest.raises(InvalidInput) as info:
        pki.CertStatusAnswer(status, revoked_at, reason)  # type: ignore[arg-type]
    assert info.value.code == "pki.ocsp.status"
