"""The decommission service on a real home (SoftHSM2 CA keys, SQLite store): requests,
evidence checked by the pure verifier, retirement with cessationOfOperation and the CRL in the
same transaction, expiry to unverified, the offline path, and return to service through the
factory (a new id; the old one stays refused). Time is a parameter: the deadline is passed by
giving ``sweep`` a later ``now``. The device side (a real agent, swtpm) is in
tests/integration/decommission.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from support.runtimes import csr, home_runtime, new_idevid
from trustfleet.attestation.wipe import (
    signature_hash,
    signing_input,
    spki_sha256,
    unsigned_evidence,
)
from trustfleet.errors import Conflict, PermissionDenied
from trustfleet.services.decommission import (
    decommission_offline,
    get_decommission,
    list_decommissions,
    request_decommission,
    sweep,
)
from trustfleet.services.enrollment import enroll
from trustfleet.services.revocation import current_crl
from trustfleet.services.runtime import Runtime

pytestmark = pytest.mark.integration

_counter = iter(range(1, 1_000_000))


def _now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture(scope="module")
def rt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    yield from home_runtime(tmp_path_factory, "decom", organization="Decom Test", now=_now())


@dataclass
class Device:
    id: str
    key: ec.EllipticCurvePrivateKey
    idevid: x509.Certificate


def _enrolled(rt: Runtime, key: ec.EllipticCurvePrivateKey | None = None) -> Device:
    device_id = f"dec-{next(_counter):06d}-{_now().strftime('%H%M%S')}"
    key, idevid = new_idevid(rt, device_id, model="t", now=_now())
    _enroll(rt, Device(device_id, key, idevid))
    return Device(device_id, key, idevid)


def _enroll(rt: Runtime, device: Device) -> x509.Certificate:
    body = base64.b64encode(csr(device.key, device.id, encoding=serialization.Encoding.DER))
    pem = device.idevid.public_bytes(serialization.Encoding.PEM).decode()
    return enroll(rt, client_cert_pem=pem, body=body, mode="enroll", now=_now())


class Published:
    """The broker, as far as the service can tell: what was handed over."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    def publish(self, topic: str, payload: bytes, *, what: str) -> None:
        assert what
        self.sent.append((topic, payload))


def _evidence(device: Device, nonce: str, *, key: ec.EllipticCurvePrivateKey | None = None,
              device_id: str | None = None) -> dict[str, Any]:  # fmt: skip
    signer = key or device.key
    doc = unsigned_evidence(
        device_id=device_id or device.id, nonce=nonce, agent_time=_now(), tpm_clock=None,
        token_keys=[{"label": "identity", "spki_sha256": spki_sha256(device.key.public_key())}],
        ak=None, sealed=["state.enc"],
    )  # fmt: skip
    signature = signer.sign(signing_input(doc), ec.ECDSA(signature_hash(signer.curve)))
    return {**doc, "signature": base64.b64encode(signature).decode()}


def _answer(rt: Runtime, device_id: str, evidence: Any) -> None:
    with rt.uow.begin() as tx:
        cmd = next(c for c in tx.commands.page_for_device(device_id, limit=5)
                   if c.name == "decommission" and c.state == "sent")  # fmt: skip
        assert tx.commands.answer(cmd.id, device_id=device_id, ok=True,
                                  result={"evidence": evidence}, now=_now())  # fmt: skip


def test_verified_evidence_retires_the_device(rt: Runtime) -> None:
    device = _enrolled(rt)
    published = Published()
    sent = request_decommission(rt, published, device.id, actor="operator:t", now=_now())
    ((topic, payload),) = published.sent[:1]
    assert topic == f"tf/v1/d/{device.id}/cmd" and sent.decommission.nonce.encode() in payload
    assert len(sent.decommission.nonce) == 64  # 256 bits
    again = request_decommission(rt, published, device.id, actor="operator:t", now=_now())
    assert again.decommission.nonce == sent.decommission.nonce  # re-sent, same nonce
    assert again.command_id != sent.command_id and len(published.sent) == 2
    _answer(rt, device.id, _evidence(device, sent.decommission.nonce))
    outcome = sweep(rt, now=_now())
    assert outcome.verified == (device.id,)
    assert get_decommission(rt, device.id).state == "verified"
    with rt.uow.begin(read_only=True) as tx:
        assert tx.devices.require(device.id).state == "decommissioned"
        certs = tx.certificates.list_for_device(device.id)
    assert {(c.status, c.revocation_reason) for c in certs} == {("revoked", "cessationOfOperation")}
    crl = x509.load_der_x509_crl(current_crl(rt, "device", now=_now()))
    ldevid = next(c for c in certs if c.kind == "ldevid")
    entry = crl.get_revoked_certificate_by_serial_number(int(ldevid.serial, 16))
    assert entry is not None
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason == (
        x509.ReasonFlags.cessation_of_operation
    )
    with pytest.raises(Conflict, match="already decommissioned"):
        request_decommission(rt, published, device.id, actor="operator:t", now=_now())


def test_refused_evidence_stays_pending_then_unverified(rt: Runtime) -> None:
    device = _enrolled(rt)
    sent = request_decommission(rt, Published(), device.id, actor="operator:t", now=_now())
    nonce = sent.decommission.nonce
    # Regression: a long refusal reason made the expiry fail for ever (store bound: 300 chars).
    forged = _evidence(device, nonce, key=ec.generate_private_key(ec.SECP256R1()),
                       device_id="z" * 200)  # fmt: skip
    _answer(rt, device.id, forged)
    assert sweep(rt, now=_now()).refused == (device.id,)
    assert sweep(rt, now=_now()).refused == ()  # an answer is checked once
    assert get_decommission(rt, device.id).state == "pending"
    later = _now() + timedelta(seconds=rt.settings.lifecycle.decommission_timeout_s + 1)
    assert device.id in sweep(rt, now=later).expired
    record = get_decommission(rt, device.id)
    assert record.state == "unverified" and record.reason is not None
    assert record.reason.startswith("wipe evidence refused") and len(record.reason) <= 300
    assert device.id in [r.device_id for r in list_decommissions(rt, state="unverified")]


def test_offline_path_and_refusals(rt: Runtime) -> None:
    device = _enrolled(rt)
    record = decommission_offline(rt, device.id, actor="operator:t", now=_now())
    assert record.state == "unverified" and "declared offline" in (record.reason or "")
    with pytest.raises(Conflict):
        decommission_offline(rt, device.id, actor="operator:t", now=_now())
    manufactured = f"dec-m{next(_counter):05d}-{_now().strftime('%H%M%S')}"
    new_idevid(rt, manufactured, model="t", now=_now())
    with pytest.raises(Conflict) as refused:
        request_decommission(rt, Published(), manufactured, actor="operator:t", now=_now())
    assert refused.value.code == "decommission.not_enrolled"


def test_return_to_service_is_a_new_identity(rt: Runtime) -> None:
    old = _enrolled(rt)
    sent = request_decommission(rt, Published(), old.id, actor="operator:t", now=_now())
    _answer(rt, old.id, _evidence(old, sent.decommission.nonce))
    assert sweep(rt, now=_now()).verified == (old.id,)
    with pytest.raises(PermissionDenied):
        _enroll(rt, old)  # the old id never enrolls again
    # The factory gives the same hardware a new key, a new id and a new IDevID: it enrolls.
    renewed = _enrolled(rt)
    assert renewed.id != old.id
    with rt.uow.begin(read_only=True) as tx:
        assert tx.devices.require(renewed.id).state == "enrolled"
        assert tx.devices.require(old.id).state == "decommissioned"
