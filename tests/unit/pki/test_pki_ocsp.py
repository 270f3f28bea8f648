from __future__ import annotations

import subprocess
import time
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pki_hierarchy import NOW, REVOKED_AT, Hierarchy, ocsp_answers

from support.pkilint import lint_ocsp_response
from trustfleet import pki

VALIDITY = timedelta(hours=4)


def _respond(
    hierarchy: Hierarchy, request: bytes, issuer: pki.IssuerContext | None = None
) -> bytes:
    answers = ocsp_answers(hierarchy)
    return pki.respond(
        request,
        issuer=issuer or hierarchy.device_ca,
        lookup=lambda serial: answers.get(serial, pki.CertStatusAnswer.unknown()),
        now=NOW,
        validity=VALIDITY,
    )


def _unknown_cert(hierarchy: Hierarchy) -> x509.Certificate:
    return pki.issue_device_certificate(
        issuer=hierarchy.device_ca, public_key=hierarchy.device_key.public_key(),
        device_id="dev-unknown-000001", profile=pki.LDEVID, organization="Acme IoT", now=NOW,
    )  # fmt: skip


@pytest.mark.parametrize("algorithm", [hashes.SHA1(), hashes.SHA256()], ids=["sha1", "sha256"])  # noqa: S303  (RFC 6960 CertIDs)
@pytest.mark.parametrize("which", ["good", "revoked", "unknown"])
def test_signed_answers(
    hierarchy: Hierarchy, which: str, algorithm: hashes.SHA1 | hashes.SHA256
) -> None:
    cert = {"good": hierarchy.ldevid, "revoked": hierarchy.server}.get(which) or _unknown_cert(
        hierarchy
    )
    request = pki.ocsp_request_for(cert, hierarchy.device_ca.cert, algorithm=algorithm)
    der = _respond(hierarchy, request)
    assert lint_ocsp_response(der) == []
    response = ocsp.load_der_ocsp_response(der)
    assert response.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    assert response.certificate_status is ocsp.OCSPCertStatus[which.upper()]
    assert response.serial_number == cert.serial_number
    assert isinstance(response.hash_algorithm, type(algorithm))
    assert response.this_update_utc == NOW
    assert response.next_update_utc == NOW + VALIDITY
    assert response.certificates == []
    ski = hierarchy.device_ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert response.responder_key_hash == ski.value.digest
    ca_key = hierarchy.device_ca.cert.public_key()
    ca_key.verify(  # type: ignore[call-arg, union-attr]
        response.signature,
        response.tbs_response_bytes,
        __import__("cryptography.hazmat.primitives.asymmetric.ec", fromlist=["ECDSA"]).ECDSA(
            response.signature_hash_algorithm
        ),
    )
    if which == "revoked":
        assert response.revocation_time_utc == REVOKED_AT
        assert response.revocation_reason is x509.ReasonFlags.key_compromise


def test_unspecified_reason_is_omitted(hierarchy: Hierarchy) -> None:
    request = pki.ocsp_request_for(hierarchy.ldevid, hierarchy.device_ca.cert)
    der = pki.respond(
        request, issuer=hierarchy.device_ca, now=NOW, validity=VALIDITY,
        lookup=lambda _: pki.CertStatusAnswer.revoked(REVOKED_AT, x509.ReasonFlags.unspecified),
    )  # fmt: skip
    response = ocsp.load_der_ocsp_response(der)
    assert response.certificate_status is ocsp.OCSPCertStatus.REVOKED
    assert response.revocation_reason is None
    assert lint_ocsp_response(der) == []


def test_nonce_is_echoed(hierarchy: Hierarchy) -> None:
    nonce = bytes(range(16))
    request = pki.ocsp_request_for(hierarchy.ldevid, hierarchy.device_ca.cert, nonce=nonce)
    der = _respond(hierarchy, request)
    response = ocsp.load_der_ocsp_response(der)
    assert response.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == nonce
    assert lint_ocsp_response(der) == []
    without = ocsp.load_der_ocsp_response(
        _respond(hierarchy, pki.ocsp_request_for(hierarchy.ldevid, hierarchy.device_ca.cert))
    )
    assert len(without.extensions) == 0


# Finding 9.4 (OCSP nonce, RFC 8954 §2.1): a nonce of 1 to 32 octets is echoed; an empty or
# longer one is refused with malformedRequest (not echoed, not silently signed).
NONCE_LENGTHS = {
    "1-octet": (1, True),
    "16-octets": (16, True),
    "32-octets": (32, True),
    "empty": (0, False),
    "33-octets": (33, False),
    "128-octets": (128, False),
    "1000-octets": (1000, False),
}


@pytest.mark.parametrize("name", list(NONCE_LENGTHS), ids=list(NONCE_LENGTHS))
def test_nonce_length_bounds(hierarchy: Hierarchy, name: str) -> None:
    length, accepted = NONCE_LENGTHS[name]
    nonce = bytes(range(256))[:length] if length <= 256 else b"\x5a" * length
    request = pki.ocsp_request_for(hierarchy.ldevid, hierarchy.device_ca.cert, nonce=nonce)
    der = _respond(hierarchy, request)
    response = ocsp.load_der_ocsp_response(der)
    assert lint_ocsp_response(der) == []
    if not accepted:
        assert response.response_status is ocsp.OCSPResponseStatus.MALFORMED_REQUEST
        return
    assert response.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    assert response.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == nonce


def test_requested_issuer_names_the_ca_of_the_certificate(hierarchy: Hierarchy) -> None:
    cas = {"device": hierarchy.device_ca.cert, "manufacturing": hierarchy.manufacturing.cert}
    about_ldevid = pki.ocsp_request_for(hierarchy.ldevid, hierarchy.device_ca.cert)
    about_idevid = pki.ocsp_request_for(hierarchy.idevid, hierarchy.manufacturing.cert)
    about_ca = pki.ocsp_request_for(hierarchy.device_ca.cert, hierarchy.root.cert)
    assert pki.requested_issuer(about_ldevid, cas) == "device"
    assert pki.requested_issuer(about_idevid, cas) == "manufacturing"
    assert pki.requested_issuer(about_ca, cas) is None
    assert pki.requested_issuer(b"garbage", cas) is None


def test_idevid_answer_is_signed_by_the_manufacturing_ca(hierarchy: Hierarchy) -> None:
    request = pki.ocsp_request_for(hierarchy.idevid, hierarchy.manufacturing.cert)
    der = _respond(hierarchy, request, issuer=hierarchy.manufacturing)
    response = ocsp.load_der_ocsp_response(der)
    assert response.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    assert response.certificate_status is ocsp.OCSPCertStatus.UNKNOWN  # not in this lookup
    public = hierarchy.manufacturing.cert.public_key()
    public.verify(  # type: ignore[call-arg,union-attr]  # an EC CA key
        response.signature, response.tbs_response_bytes,
        ec.ECDSA(response.signature_hash_algorithm),  # type: ignore[arg-type]
    )  # fmt: skip
    assert lint_ocsp_response(der) == []


MALFORMED = {
    "empty": b"",
    "garbage": b"\x00\x01garbage",
    "truncated": b"\x30\x82\x01\x00\x30",
    "too-large": b"\x30" * 9000,
}


@pytest.mark.parametrize("name", list(MALFORMED), ids=list(MALFORMED))
def test_malformed_requests(hierarchy: Hierarchy, name: str) -> None:
    der = _respond(hierarchy, MALFORMED[name])
    response = ocsp.load_der_ocsp_response(der)
    assert response.response_status is ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    assert lint_ocsp_response(der) == []


def test_sha512_cert_id_is_malformed(hierarchy: Hierarchy) -> None:
    builder = ocsp.OCSPRequestBuilder().add_certificate(
        hierarchy.ldevid, hierarchy.device_ca.cert, hashes.SHA512()
    )
    request = builder.build().public_bytes(serialization.Encoding.DER)
    response = ocsp.load_der_ocsp_response(_respond(hierarchy, request))
    assert response.response_status is ocsp.OCSPResponseStatus.MALFORMED_REQUEST


@pytest.mark.parametrize("algorithm", [hashes.SHA1(), hashes.SHA256()], ids=["sha1", "sha256"])  # noqa: S303  (RFC 6960 CertIDs)
def test_wrong_issuer_is_unauthorized(
    hierarchy: Hierarchy, algorithm: hashes.SHA1 | hashes.SHA256
) -> None:
    # An IDevID asked of the device CA's responder: the CertID names the manufacturing CA.
    request = pki.ocsp_request_for(
        hierarchy.idevid, hierarchy.manufacturing.cert, algorithm=algorithm
    )
    der = _respond(hierarchy, request)
    response = ocsp.load_der_ocsp_response(der)
    assert response.response_status is ocsp.OCSPResponseStatus.UNAUTHORIZED
    assert lint_ocsp_response(der) == []


def test_same_name_other_key_is_unauthorized(hierarchy: Hierarchy) -> None:
    # The issuer name matches, the key does not (a rogue CA with our CA's name).
    request = pki.ocsp_request_for(hierarchy.ldevid, hierarchy.device_ca.cert)
    impostor = pki.IssuerContext(
        pki.make_root_ca(key=hierarchy.device_key, organization="Acme IoT", now=NOW),
        hierarchy.device_key, None, None,
    )  # fmt: skip
    response = ocsp.load_der_ocsp_response(_respond(hierarchy, request, impostor))
    assert response.response_status is ocsp.OCSPResponseStatus.UNAUTHORIZED


@pytest.mark.parametrize(("which", "status"), [("good", "good"), ("revoked", "revoked")])
def test_openssl_verifies_the_response(
    hierarchy: Hierarchy, tmp_path: Path, which: str, status: str
) -> None:
    cert = hierarchy.ldevid if which == "good" else hierarchy.server
    nonce = b"0123456789abcdef"
    request = pki.ocsp_request_for(
        cert,
        hierarchy.device_ca.cert,
        algorithm=hashes.SHA1(),  # noqa: S303  (the CertID hash openssl uses)
        nonce=nonce,
    )
    files = {
        "resp.der": _respond(hierarchy, request),
        "ca.pem": b"".join(
            c.public_bytes(serialization.Encoding.PEM)
            for c in (hierarchy.device_ca.cert, hierarchy.root.cert)
        ),
        "issuer.pem": hierarchy.device_ca.cert.public_bytes(serialization.Encoding.PEM),
        "cert.pem": cert.public_bytes(serialization.Encoding.PEM),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    result = subprocess.run(
        # With -cert openssl builds its own request, so it cannot check our nonce (tested
        # above with cryptography); it checks the signature, the chain and the status.
        ["openssl", "ocsp", "-respin", "resp.der", "-no_nonce", "-CAfile", "ca.pem",
         "-issuer", "issuer.pem", "-cert", "cert.pem",
         "-attime", str(int((NOW + timedelta(minutes=1)).timestamp())),
         # openssl checks status times against the wall clock, not -attime: allow for NOW.
         "-validity_period", str(int(abs(time.time() - NOW.timestamp())) + 86400)],
        cwd=tmp_path, capture_output=True, text=True, check=False, timeout=30,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Response verify OK" in result.stderr + result.stdout
    assert f"cert.pem: {status}" in result.stdout


def test_cert_status_answer_invariants() -> None:
    with pytest.raises(Exception, match="revoked status only"):
        pki.CertStatusAnswer(ocsp.OCSPCertStatus.GOOD, revoked_at=NOW)
    with pytest.raises(Exception, match="revoked status only"):
        pki.CertStatusAnswer(ocsp.OCSPCertStatus.REVOKED)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=2048))
def test_respond_answers_any_bytes(hierarchy: Hierarchy, body: bytes) -> None:
    der = _respond(hierarchy, body)
    assert ocsp.load_der_ocsp_response(der).response_status in (
        ocsp.OCSPResponseStatus.MALFORMED_REQUEST,
        ocsp.OCSPResponseStatus.UNAUTHORIZED,
        ocsp.OCSPResponseStatus.SUCCESSFUL,
    )
