"""The LwM2M tables (migration 0011) on SQLite and PostgreSQL: credentials, registrations,
manifests and their sequence, the protocol column, the firmware campaign lookup."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from trustfleet.errors import Conflict, InvalidInput
from trustfleet.store import NewCampaignDevice, UnitOfWork


def test_credentials_and_protocol(uow: UnitOfWork, now: datetime) -> None:
    with uow.begin() as tx:
        device = tx.devices.add(id="lw-s-0001", model="m", protocol="lwm2m", now=now)
        assert device.protocol == "lwm2m"
        assert tx.devices.add(id="mq-s-0001", model="m", now=now).protocol == "mqtt"
        for identity, purpose in (("lw-s-0001", "bootstrap"), ("lw-s-0001:dm", "dm")):
            tx.lwm2m.add_credential(
                identity=identity,
                device_id="lw-s-0001",
                purpose=purpose,
                ciphertext=b"\x01" * 32,
                nonce=b"\x02" * 12,
                now=now,
            )
    with pytest.raises(Conflict), uow.begin() as tx:
        tx.lwm2m.add_credential(identity="lw-s-0001", device_id="lw-s-0001", purpose="dm",
                                ciphertext=b"x", nonce=b"y", now=now)  # fmt: skip
    with pytest.raises(InvalidInput), uow.begin() as tx:
        tx.lwm2m.add_credential(identity="z", device_id="lw-s-0001", purpose="admin",
                                ciphertext=b"x", nonce=b"y", now=now)  # fmt: skip
    with uow.begin() as tx:
        assert tx.lwm2m.end_credentials("lw-s-0001", reason="replaced", now=now,
                                        purposes=("dm",)) == ["lw-s-0001:dm"]  # fmt: skip
        assert tx.lwm2m.end_credentials("lw-s-0001", reason="revoked", now=now) == ["lw-s-0001"]
        stored = tx.lwm2m.credential("lw-s-0001:dm")
        assert tx.devices.protocols(["lw-s-0001", "mq-s-0001", "nope"]) == {
            "lw-s-0001": "lwm2m", "mq-s-0001": "mqtt"}  # fmt: skip
        tx.devices.set_protocol("mq-s-0001", "lwm2m", now=now)
    assert stored is not None and stored.end_reason == "replaced" and stored.nonce == b"\x02" * 12
    assert "ciphertext" not in repr(stored)


def test_registration_manifest_and_campaign(uow: UnitOfWork, now: datetime) -> None:
    with uow.begin() as tx:
        tx.devices.add(id="lw-s-0002", model="m", protocol="lwm2m", now=now)
        first = tx.lwm2m.put_registration(
            device_id="lw-s-0002", endpoint="lw-s-0002", location="rd/00", lifetime_s=60,
            binding="U", lwm2m_version="1.1", objects=["/3/0"], address="127.0.0.1:1",
            mode="psk", registered_at=now, updated_at=now,
        )  # fmt: skip
        assert first.expires_at == now + timedelta(seconds=60)
        tx.lwm2m.set_firmware("lw-s-0002", state=1, result=0, version="1.0.0")
        assert tx.lwm2m.end_registration("lw-s-0002", reason="expired", now=now)
        assert not tx.lwm2m.end_registration("lw-s-0002", reason="expired", now=now)
        again = tx.lwm2m.put_registration(
            device_id="lw-s-0002", endpoint="lw-s-0002", location="rd/01", lifetime_s=90,
            binding="U", lwm2m_version="1.1", objects=["/3/0", "/5/0"], address="127.0.0.1:2",
            mode="cert", registered_at=now, updated_at=now,
        )  # fmt: skip
        assert again.ended_at is None and again.firmware_version == "1.0.0"
        assert again.objects == ("/3/0", "/5/0")
        assert tx.lwm2m.next_sequence("m") == 1
        tx.lwm2m.add_manifest(model="m", version="1.0.0", sequence=1, manifest=b"a", now=now)
        assert tx.lwm2m.next_sequence("m") == 2 and tx.lwm2m.next_sequence("other") == 1
        tx.campaigns.add(id="c1", model="m", version="1.1.0", waves=[100.0],
                         max_failure_rate=0.5, device_timeout_s=60, now=now)  # fmt: skip
        tx.campaigns.add_devices("c1", [NewCampaignDevice(device_id="lw-s-0002", wave=1)],
                                 now=now)  # fmt: skip
        assert tx.lwm2m.firmware_campaign("lw-s-0002", states=["notified"]) is None
        tx.campaigns.mark_notified("c1", ["lw-s-0002"], now=now)
        assert tx.lwm2m.firmware_campaign("lw-s-0002", states=["notified"]) == (
            "c1", "1.1.0", "notified")  # fmt: skip
    with pytest.raises(Conflict), uow.begin() as tx:
        tx.lwm2m.add_manifest(model="m", version="1.1.0", sequence=1, manifest=b"b", now=now)
    with uow.begin(read_only=True) as tx:
        manifest = tx.lwm2m.manifest(model="m", version="1.0.0")
    assert manifest is not None and manifest.manifest == b"a"
