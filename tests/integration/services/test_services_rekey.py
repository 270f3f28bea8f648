"""Re-key on the service side (a real home, its store and CA keys in SoftHSM2): EST accepts a
new key and records ``device.rekeyed``, refuses an old key; ``services.rekey`` records, sends
and counts ``reenroll`` commands."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from support.runtimes import csr, home_runtime, new_idevid
from trustfleet.errors import InvalidInput, Unavailable
from trustfleet.services.enrollment import enroll
from trustfleet.services.rekey import reenroll_progress, request_reenroll, select_devices
from trustfleet.services.runtime import Runtime

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def rt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    yield from home_runtime(tmp_path_factory, "rekey", organization="Rekey Test", now=_now())


def _now() -> datetime:
    return datetime.now(UTC)


def _enroll(
    rt: Runtime, device_id: str, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate, mode: str
) -> x509.Certificate:
    body = base64.b64encode(csr(key, device_id, encoding=serialization.Encoding.DER))
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    return enroll(rt, client_cert_pem=pem, body=body, mode=mode, now=_now())  # type: ignore[arg-type]


def _events(rt: Runtime, device_id: str, kind: str) -> list[object]:
    with rt.uow.begin(read_only=True) as tx:
        return [e for e in tx.events.list(subject=f"device:{device_id}", limit=100)
                if e.type == kind]  # fmt: skip


def test_a_new_key_is_certified_and_an_old_one_never_comes_back(rt: Runtime) -> None:
    device_id = "dev-svcrekey00001"
    factory_key, idevid = new_idevid(rt, device_id, model="rk", now=_now())
    first = _enroll(rt, device_id, factory_key, idevid, "enroll")
    renewed = _enroll(rt, device_id, factory_key, first, "reenroll")  # same key: a renewal
    assert _events(rt, device_id, "device.rekeyed") == []
    new_key = ec.generate_private_key(ec.SECP256R1())
    rekeyed = _enroll(rt, device_id, new_key, renewed, "reenroll")
    assert rekeyed.public_key() == new_key.public_key()
    (event,) = _events(rt, device_id, "device.rekeyed")
    assert event.details["serial"] == format(rekeyed.serial_number, "x")  # type: ignore[attr-defined]
    with rt.uow.begin(read_only=True) as tx:
        old = tx.certificates.get("device", format(renewed.serial_number, "x"))
    assert old is not None and old.revocation_reason == "superseded"
    with pytest.raises(InvalidInput) as refused:
        _enroll(rt, device_id, factory_key, rekeyed, "reenroll")  # back to the factory key
    assert refused.value.code == "est.csr.key_reused"
    codes = [e.details.get("code") for e in _events(rt, device_id, "enrollment.refused")]  # type: ignore[attr-defined]
    assert "est.csr.key_reused" in codes


class _Broker:
    """A ServiceMqtt that takes every message except those to ``down``."""

    def __init__(self, down: str) -> None:
        self.down, self.sent = down, []  # type: ignore[var-annotated]

    def publish(self, topic: str, payload: bytes, *, what: str) -> None:
        if self.down in topic:
            raise Unavailable("the broker did not acknowledge", code="mqtt.unavailable")
        self.sent.append((topic, payload))


def test_commands_are_recorded_sent_and_counted(rt: Runtime) -> None:
    ids = []
    for n in range(3):
        device_id = f"dev-svcrekeycmd{n:02d}"
        key, idevid = new_idevid(rt, device_id, model="rk-cmd", now=_now())
        _enroll(rt, device_id, key, idevid, "enroll")
        ids.append(device_id)
    new_idevid(rt, "dev-svcrekeycmd99", model="rk-cmd", now=_now())  # manufactured only
    with rt.uow.begin(read_only=True) as tx:
        assert select_devices(tx, model="rk-cmd") == ids
        assert set(ids) <= set(select_devices(tx, fleet=True))
    broker = _Broker(down=ids[2])
    rows = request_reenroll(rt, broker, ids, rekey=True, actor="operator:test", now=_now())
    assert [r.state for r in rows] == ["sent", "sent", "failed"]
    assert len(broker.sent) == 2 and all(b'"rekey": true' in p for _, p in broker.sent)
    assert len(_events(rt, ids[0], "device.rekey.requested")) == 1
    with rt.uow.begin() as tx:
        tx.commands.answer(rows[0].id, device_id=ids[0], ok=True, result={"rekeyed": True},
                           now=_now())  # fmt: skip
    progress = reenroll_progress(rt, [r.id for r in rows])
    assert (progress.done, progress.failed, progress.pending) == (1, 1, 1)
    assert progress.failures[0][0] == ids[2]
