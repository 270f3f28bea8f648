"""Issuance rules (issue 9 §4): one valid LDevID per device, renewal only from the current one,
a second IDevID enrollment only after an operator's re-open, and each used exactly once.

Through the service functions on a real home (SoftHSM2 CA keys, SQLite store), at the real
current time. The HTTP and independent-client views are in tests/integration/est.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp

from support.runtimes import csr, home_runtime, new_idevid
from trustfleet.errors import Conflict, PermissionDenied
from trustfleet.pki import ocsp_request_for
from trustfleet.services._certs import record_certificate
from trustfleet.services.enrollment import enroll, reopen_enrollment
from trustfleet.services.home import HomeOptions, init_server_home
from trustfleet.services.revocation import (
    answer_ocsp,
    current_crl,
    regenerate_crl,
    revoke_device,
)
from trustfleet.services.runtime import Runtime
from trustfleet.settings import load_server_settings

pytestmark = pytest.mark.integration

_counter = iter(range(1, 1_000_000))


@pytest.fixture(scope="module")
def rt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    yield from home_runtime(tmp_path_factory, "enroll", organization="Enroll Test", now=_now())


def _now() -> datetime:
    return datetime.now(UTC)


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _csr_body(key: ec.EllipticCurvePrivateKey, device_id: str) -> bytes:
    return base64.b64encode(csr(key, device_id, encoding=serialization.Encoding.DER))


@dataclass
class Device:
    id: str
    key: ec.EllipticCurvePrivateKey
    idevid: x509.Certificate


def _device(rt: Runtime) -> Device:
    device_id = f"enr-{next(_counter):06d}-{_now().strftime('%H%M%S')}"
    key, idevid = new_idevid(rt, device_id, model="t", now=_now())
    return Device(device_id, key, idevid)


def _enroll(rt: Runtime, device: Device, *, with_cert: x509.Certificate) -> x509.Certificate:
    mode = "enroll" if with_cert == device.idevid else "reenroll"
    return enroll(
        rt,
        client_cert_pem=_pem(with_cert),
        body=_csr_body(device.key, device.id),
        mode=mode,
        now=_now(),
    )


def _refused(rt: Runtime, device: Device, *, with_cert: x509.Certificate) -> str:
    with pytest.raises(PermissionDenied) as info:
        _enroll(rt, device, with_cert=with_cert)
    return info.value.code or ""


def _valid_ldevids(rt: Runtime, device_id: str) -> list[str]:
    with rt.uow.begin(read_only=True) as tx:
        certs = tx.certificates.list_for_device(device_id)
    return [c.serial for c in certs if c.kind == "ldevid" and c.status == "valid"]


def _ocsp(rt: Runtime, cert: x509.Certificate, issuer: str) -> ocsp.OCSPResponse:
    request = ocsp_request_for(cert, rt.ca_certificate(issuer), nonce=b"n" * 16)
    return ocsp.load_der_ocsp_response(answer_ocsp(rt, request, now=_now()))


# -- finding: "one device ended with 8 valid LDevIDs; a stolen LDevID renews itself" ----------

Attack = Callable[[Runtime, Device, x509.Certificate], str]


def _idevid_again(rt: Runtime, device: Device, _first: x509.Certificate) -> str:
    return _refused(rt, device, with_cert=device.idevid)


def _superseded_renews(rt: Runtime, device: Device, first: x509.Certificate) -> str:
    _enroll(rt, device, with_cert=first)  # the device renews: `first` is superseded
    return _refused(rt, device, with_cert=first)


def _superseded_by_reopened_enrollment(rt: Runtime, device: Device, first: x509.Certificate) -> str:
    reopen_enrollment(rt, device.id, actor="test", reason="reflashed", now=_now())
    _enroll(rt, device, with_cert=device.idevid)
    return _refused(rt, device, with_cert=first)


def _older_of_two_valid(rt: Runtime, device: Device, first: x509.Certificate) -> str:
    # Data from before this rule: a second valid LDevID recorded beside the first.
    from trustfleet.pki import LDEVID, issue_device_certificate

    newer = issue_device_certificate(
        issuer=rt.issuer("device"), public_key=device.key.public_key(), device_id=device.id,
        profile=LDEVID, organization="Enroll Test", now=_now(),
    )  # fmt: skip
    with rt.uow.begin() as tx:
        record_certificate(tx, newer, issuer="device", kind="ldevid", device_id=device.id,
                           now=_now())  # fmt: skip
    code = _refused(rt, device, with_cert=first)
    _enroll(rt, device, with_cert=newer)  # the newest renews, and supersedes both
    return code


def _revoked_device_idevid(rt: Runtime, device: Device, _first: x509.Certificate) -> str:
    revoke_device(rt, device.id, reason="keyCompromise", actor="test", now=_now())
    return _refused(rt, device, with_cert=device.idevid)


def _lapsed_reopen(rt: Runtime, device: Device, _first: x509.Certificate) -> str:
    hours = rt.settings.pki.reopen_validity_hours
    reopen_enrollment(
        rt, device.id, actor="test", reason=None, now=_now() - timedelta(hours=hours, minutes=1)
    )
    return _refused(rt, device, with_cert=device.idevid)


def _reopen_used_by_renewal(rt: Runtime, device: Device, first: x509.Certificate) -> str:
    reopen_enrollment(rt, device.id, actor="test", reason=None, now=_now())
    _enroll(rt, device, with_cert=first)  # any issuance uses the re-open up
    return _refused(rt, device, with_cert=device.idevid)


ATTACKS: dict[str, tuple[Attack, str]] = {
    "idevid-enrolls-an-enrolled-device-again": (_idevid_again, "est.auth.already_enrolled"),
    "superseded-ldevid-renews-itself": (_superseded_renews, "est.auth.superseded"),
    "ldevid-superseded-by-reopened-enrollment": (
        _superseded_by_reopened_enrollment, "est.auth.superseded"),
    "older-of-two-valid-ldevids-renews": (_older_of_two_valid, "est.auth.not_current"),
    "idevid-of-revoked-device": (_revoked_device_idevid, "est.auth.revoked"),
    "reopen-lapsed": (_lapsed_reopen, "est.auth.already_enrolled"),
    "reopen-used-up-by-a-renewal": (_reopen_used_by_renewal, "est.auth.already_enrolled"),
}  # fmt: skip


@pytest.mark.parametrize("name", list(ATTACKS), ids=list(ATTACKS))
def test_credential_attack_is_refused(rt: Runtime, name: str) -> None:
    attack, code = ATTACKS[name]
    device = _device(rt)
    first = _enroll(rt, device, with_cert=device.idevid)

    assert attack(rt, device, first) == code
    assert len(_valid_ldevids(rt, device.id)) <= 1


def test_each_issuance_supersedes_the_previous_ldevid(rt: Runtime) -> None:
    device = _device(rt)
    issued = [_enroll(rt, device, with_cert=device.idevid)]
    for _ in range(3):
        issued.append(_enroll(rt, device, with_cert=issued[-1]))
    reopen_enrollment(rt, device.id, actor="test", reason="token replaced", now=_now())
    issued.append(_enroll(rt, device, with_cert=device.idevid))

    assert _valid_ldevids(rt, device.id) == [format(issued[-1].serial_number, "x")]
    crl = x509.load_der_x509_crl(current_crl(rt, "device", now=_now()))
    for old in issued[:-1]:
        entry = crl.get_revoked_certificate_by_serial_number(old.serial_number)
        assert entry is not None
        reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
        assert reason is x509.ReasonFlags.superseded
        answer = _ocsp(rt, old, "device")
        assert answer.certificate_status is ocsp.OCSPCertStatus.REVOKED
        assert answer.revocation_reason is x509.ReasonFlags.superseded
    assert _ocsp(rt, issued[-1], "device").certificate_status is ocsp.OCSPCertStatus.GOOD
    assert crl.get_revoked_certificate_by_serial_number(issued[-1].serial_number) is None
    with rt.uow.begin(read_only=True) as tx:
        events = tx.events.list(subject=f"device:{device.id}", limit=1000)
    superseded = [e for e in events if e.type == "certificate.superseded"]
    assert [e.details["serials"] for e in superseded] == [
        [format(c.serial_number, "x")] for c in issued[:-1]
    ]
    assert [e.type for e in events].count("device.reopened") == 1
    assert events[-1].details["reopen_event"] == next(
        e.id for e in events if e.type == "device.reopened"
    )


def test_a_reopen_allows_exactly_one_enrollment(rt: Runtime) -> None:
    device = _device(rt)
    _enroll(rt, device, with_cert=device.idevid)
    first = reopen_enrollment(rt, device.id, actor="test", reason=None, now=_now())
    again = reopen_enrollment(rt, device.id, actor="test", reason=None, now=_now())
    assert not first.already_open and again.already_open
    assert again.event_id == first.event_id

    _enroll(rt, device, with_cert=device.idevid)
    assert _refused(rt, device, with_cert=device.idevid) == "est.auth.already_enrolled"
    assert len(_valid_ldevids(rt, device.id)) == 1


@pytest.mark.parametrize("state", ["manufactured", "revoked"])
def test_only_an_enrolled_device_is_reopened(rt: Runtime, state: str) -> None:
    device = _device(rt)
    if state == "revoked":
        revoke_device(rt, device.id, reason="keyCompromise", actor="test", now=_now())
    with pytest.raises(Conflict) as info:
        reopen_enrollment(rt, device.id, actor="test", reason=None, now=_now())
    assert info.value.code == "enrollment.reopen.state"


class _Rollback(Exception):
    pass


def _crl_at(rt: Runtime, when: datetime) -> x509.CertificateRevocationList:
    """The device CRL as it would be issued at ``when`` (rolled back: the home is shared)."""
    der = b""
    with pytest.raises(_Rollback), rt.uow.begin() as tx:
        der = regenerate_crl(rt, tx, "device", now=when)
        raise _Rollback
    return x509.load_der_x509_crl(der)


def test_crl_leaves_out_long_expired_certificates(rt: Runtime) -> None:
    device = _device(rt)
    first = _enroll(rt, device, with_cert=device.idevid)
    second = _enroll(rt, device, with_cert=first)  # `first` superseded, on the CRL
    now = _now()
    assert _crl_at(rt, now).get_revoked_certificate_by_serial_number(first.serial_number)

    validity = timedelta(hours=rt.settings.pki.crl_validity_hours)
    after_one_crl = first.not_valid_after_utc + validity - timedelta(minutes=1)
    long_after = first.not_valid_after_utc + validity + timedelta(minutes=1)
    crl = _crl_at(rt, after_one_crl)  # still listed: no CRL after its expiry yet
    assert crl.get_revoked_certificate_by_serial_number(first.serial_number) is not None
    crl = _crl_at(rt, long_after)  # listed on a CRL issued after its expiry: may leave
    assert crl.get_revoked_certificate_by_serial_number(first.serial_number) is None
    assert second.serial_number  # still valid, never on a CRL


@pytest.mark.parametrize("racers", [2, 4])
def test_racing_renewals_with_one_certificate_issue_once(
    rt: Runtime, tmp_path_factory: pytest.TempPathFactory, db_url: str, racers: int
) -> None:
    """Several renewals with the same LDevID at the same moment (one runtime, store connection
    and token session each, like HTTPS workers): exactly one gets a certificate, on SQLite and
    on PostgreSQL (row locks)."""
    import threading

    rt.release_keys()  # one SoftHSM2 configuration per process (ADR 0002): the module home's
    home = tmp_path_factory.mktemp("race") / "home"
    init_server_home(
        home,
        options=HomeOptions(
            organization="Race Test", store_url=db_url, pins_out=home.parent / "offline-pins"
        ),
        now=_now(),
    )
    settings = load_server_settings(home)
    runtimes = [Runtime.open(settings) for _ in range(racers)]
    try:
        device = _device(runtimes[0])
        first = _enroll(runtimes[0], device, with_cert=device.idevid)
        for runtime in runtimes:
            runtime.issuer("device")  # open every token session before the start line
        barrier = threading.Barrier(racers)
        outcomes: list[str] = []

        def renew(runtime: Runtime) -> None:
            barrier.wait()
            try:
                _enroll(runtime, device, with_cert=first)
                outcomes.append("issued")
            except PermissionDenied as exc:
                outcomes.append(exc.code or "")

        threads = [threading.Thread(target=renew, args=(r,)) for r in runtimes]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert sorted(outcomes) == ["est.auth.superseded"] * (racers - 1) + ["issued"]
        assert len(_valid_ldevids(runtimes[0], device.id)) == 1
    finally:
        for runtime in runtimes:
            runtime.close()
