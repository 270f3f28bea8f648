"""Bad EST requests, as a table: each gets its 4xx and stable code, never a 500, and changes
nothing but the security log (exactly one ``enrollment.refused`` event).

The HTTP layer refuses bodies over ``[api] max_body_bytes`` with 413 before the application
sees them, so that case records no event (nothing about the client is known yet).
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from support.certs import cert_builder
from support.server import (
    RunningServer,
    SoftwareDevice,
    enroll_software,
    issue_test_identity,
    make_csr_der,
    make_key,
    make_software_device,
    new_device_id,
    openssl,
)

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Request:
    operation: str
    body: bytes
    cert: Path | None
    key: Path | None
    device_id: str | None  # the refusal's subject: known only once the client is authenticated


Setup = Callable[[RunningServer, Path], Request]


def _csr_b64(key: Path, cn: str) -> bytes:
    return base64.b64encode(make_csr_der(key, cn=cn))


def _good(server: RunningServer, work: Path) -> tuple[SoftwareDevice, bytes]:
    device = make_software_device(server, work)
    return device, _csr_b64(make_key(work / "new.key"), device.device_id)


def _enroll_with(body: Callable[[SoftwareDevice, Path], bytes]) -> Setup:
    def setup(server: RunningServer, work: Path) -> Request:
        device = make_software_device(server, work)
        return Request(
            "simpleenroll", body(device, work), device.idevid, device.key, device.device_id
        )

    return setup


def _key_csr(**key_args: object) -> Callable[[SoftwareDevice, Path], bytes]:
    def body(device: SoftwareDevice, work: Path) -> bytes:
        return _csr_b64(make_key(work / "other.key", **key_args), device.device_id)  # type: ignore[arg-type]

    return body


def _bad_signature(device: SoftwareDevice, work: Path) -> bytes:
    der = bytearray(make_csr_der(make_key(work / "new.key"), cn=device.device_id))
    der[-1] ^= 0x01  # last byte of the ECDSA signature's s: still DER, no longer valid
    return base64.b64encode(bytes(der))


def _other_cn(device: SoftwareDevice, work: Path) -> bytes:
    return _csr_b64(make_key(work / "new.key"), new_device_id("victim"))


def _no_client_cert(server: RunningServer, work: Path) -> Request:
    _device, body = _good(server, work)
    return Request("simpleenroll", body, None, None, None)


def _foreign_cert(server: RunningServer, work: Path) -> Request:
    device, body = _good(server, work)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    builder = cert_builder(
        device.device_id, key, not_before=now - timedelta(days=1), not_after=now + timedelta(days=1)
    )
    cert = builder.sign(key, hashes.SHA256())
    (work / "foreign.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (work / "foreign.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return Request("simpleenroll", body, work / "foreign.pem", work / "foreign.key", None)


def _ldevid_on_enroll(server: RunningServer, work: Path) -> Request:
    device, body = _good(server, work)
    ldevid, key = enroll_software(server, device, work)
    return Request("simpleenroll", body, ldevid, key, None)


def _idevid_on_reenroll(server: RunningServer, work: Path) -> Request:
    device, body = _good(server, work)
    enroll_software(server, device, work)
    return Request("simplereenroll", body, device.idevid, device.key, None)


def _idevid_of_enrolled_device(server: RunningServer, work: Path) -> Request:
    device, body = _good(server, work)
    enroll_software(server, device, work)
    return Request("simpleenroll", body, device.idevid, device.key, device.device_id)


def _superseded_ldevid(server: RunningServer, work: Path) -> Request:
    device, body = _good(server, work)
    first, first_key = enroll_software(server, device, work)
    enroll_software(server, device, work, operation="simplereenroll", cert=first, key=first_key)
    return Request("simplereenroll", body, first, first_key, device.device_id)


def _rsa_exponent_3(server: RunningServer, work: Path) -> Request:
    device = make_software_device(server, work)
    key = work / "rsa-e3.key"
    openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:3072",
            "-pkeyopt", "rsa_keygen_pubexp:3", "-out", key)  # fmt: skip
    body = _csr_b64(key, device.device_id)
    return Request("simpleenroll", body, device.idevid, device.key, device.device_id)


def _revoked(server: RunningServer, work: Path) -> Request:
    device, body = _good(server, work)
    result = server.cli("device", "revoke", device.device_id, "--reason", "keyCompromise")
    assert result.returncode == 0, result.stderr
    return Request("simpleenroll", body, device.idevid, device.key, None)


def _odd_idevid(
    server: RunningServer, work: Path, prefix: str, *, now: str, validity_s: int, register: bool
) -> Request:
    """An enrollment with an IDevID of the manufacturing CA made outside the factory."""
    device_id = new_device_id(prefix)
    cert, key = issue_test_identity(server.home, device_id=device_id, out_dir=work, now=now,
                                    validity_s=validity_s, register=register)  # fmt: skip
    return Request("simpleenroll", _csr_b64(make_key(work / "new.key"), device_id), cert, key, None)


def _unregistered(server: RunningServer, work: Path) -> Request:
    now = datetime.now(UTC).isoformat()
    return _odd_idevid(server, work, "ghost", now=now, validity_s=86400, register=False)


def _expired(server: RunningServer, work: Path) -> Request:
    # The CA's start is backdated at init: this IDevID ended before it.
    return _odd_idevid(server, work, "old", now="ca-start", validity_s=2, register=True)


def _too_large(server: RunningServer, work: Path) -> Request:
    device = make_software_device(server, work)
    return Request("simpleenroll", b"A" * (64 * 1024 + 4), device.idevid, device.key, None)


@dataclass(frozen=True)
class Case:
    setup: Setup
    status: int
    code: str | None
    events: int = 1


CASES = {
    "body-over-64KiB": Case(_too_large, 413, None, events=0),
    "body-not-base64": Case(_enroll_with(lambda d, w: b"%%% not base64 %%%\n"), 400,
                            "est.body.not_base64"),
    "body-base64-garbage": Case(
        _enroll_with(lambda d, w: base64.b64encode(secrets.token_bytes(300))), 400,
        "est.body.not_csr",
    ),
    "csr-p521-key": Case(_enroll_with(_key_csr(curve="P-521")), 400, "est.csr.key_type"),
    "csr-rsa2048-key": Case(_enroll_with(_key_csr(algorithm="RSA")), 400, "est.csr.key_type"),
    "csr-bad-self-signature": Case(_enroll_with(_bad_signature), 400, "est.csr.signature"),
    "csr-cn-of-another-device": Case(_enroll_with(_other_cn), 400, "est.csr.subject_mismatch"),
    "no-client-certificate": Case(_no_client_cert, 403, "est.auth.missing"),
    "foreign-self-signed-client-cert": Case(_foreign_cert, 403, "est.auth.unknown"),
    "ldevid-on-simpleenroll": Case(_ldevid_on_enroll, 403, "est.auth.unknown"),
    "idevid-on-simplereenroll": Case(_idevid_on_reenroll, 403, "est.auth.unknown"),
    "revoked-device": Case(_revoked, 403, "est.auth.revoked"),
    # issue 9 §4: one valid LDevID per device; renewal only from the current one.
    "idevid-of-enrolled-device-not-reopened": Case(_idevid_of_enrolled_device, 403,
                                                   "est.auth.already_enrolled"),
    "superseded-ldevid-on-simplereenroll": Case(_superseded_ldevid, 403, "est.auth.superseded"),
    "csr-rsa3072-exponent-3": Case(_rsa_exponent_3, 400, "est.csr.key_type"),
    "our-ca-but-unregistered": Case(_unregistered, 403, "est.auth.unknown"),
    "expired-idevid": Case(_expired, 403, "est.auth.expired"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_bad_request_is_refused_and_changes_nothing(
    server: RunningServer, work: Path, case: Case
) -> None:
    request = case.setup(server, work)
    before = server.snapshot()

    response = server.est(request.operation, request.body, cert=request.cert, key=request.key)

    assert response.status_code == case.status, response.text
    assert response.headers["content-type"].startswith("text/plain")
    assert len(response.text.strip().splitlines()) == 1
    if case.code is not None:
        assert response.headers["x-trustfleet-error"] == case.code
    after = server.snapshot()
    assert after.certificates == before.certificates
    assert after.device_states == before.device_states
    events = server.events_since(before)
    assert [e.type for e in events] == ["enrollment.refused"] * case.events
    for event in events:
        assert event.details["code"] == case.code
        if request.device_id is not None:
            assert event.subject == f"device:{request.device_id}"
