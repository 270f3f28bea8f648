"""The LwM2M backend over a real home (``server init``): SoftHSM2 ``tf-service`` wraps the PSKs,
SQLite holds them; admission table, bootstrap rotation, registrations, readings, revocation."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from support.server import init_home
from trustfleet.errors import PermissionDenied
from trustfleet.lwm2m.ports import PeerIdentity, Reading, Registration
from trustfleet.services.lwm2m import (
    ServiceLwm2mBackend,
    create_credential,
    end_credentials,
    lwm2m_backend,
)
from trustfleet.services.revocation import revoke_device
from trustfleet.settings.server import load_server_settings
from trustfleet.sim.process import free_port

NOW = datetime.now(UTC)  # real time: the home has real certificates (any date works)
ADDR = ("127.0.0.1", 40000)


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceLwm2mBackend]:
    home: Path = tmp_path_factory.mktemp("lwm2m-backend") / "home"
    init_home(home, port=free_port())
    with lwm2m_backend(load_server_settings(home)) as b:
        yield b


def _device(b: ServiceLwm2mBackend, device_id: str, *, protocol: str = "lwm2m") -> str:
    with b.rt.uow.begin() as tx:
        tx.devices.add(id=device_id, model="sim-v1", protocol=protocol, now=NOW)
        identity, _ = create_credential(
            tx, b.vault, device_id=device_id, purpose="bootstrap", size_bytes=16, now=NOW
        )
    return identity


def test_psk_round_trip_and_bootstrap_rotation(backend: ServiceLwm2mBackend) -> None:
    identity = _device(backend, "lw-dev-0001")
    credential = backend.psk_credential(identity)
    assert credential is not None and credential.purpose == "bootstrap"
    assert len(credential.key) == 16 and credential.key.hex() not in repr(credential)
    with backend.rt.uow.begin(read_only=True) as tx:
        stored = tx.lwm2m.credential(identity)
    assert stored is not None and credential.key not in stored.ciphertext
    peer = PeerIdentity(mode="psk", identity=identity, address=ADDR)
    access = backend.admit(peer, endpoint="lw-dev-0001", purpose="bootstrap", now=NOW)
    plan = backend.bootstrap_plan(access, now=NOW)
    assert plan.psk_identity == "lw-dev-0001:dm" and plan.psk_key is not None
    assert plan.psk_key.hex() not in repr(plan)
    dm = backend.psk_credential("lw-dev-0001:dm")
    assert dm is not None and dm.key == plan.psk_key and dm.purpose == "dm"
    second = backend.bootstrap_plan(access, now=NOW)
    assert second.psk_identity == "lw-dev-0001:dm2"
    assert backend.psk_credential("lw-dev-0001:dm") is None  # the old dm credential ended


@pytest.mark.parametrize(
    ("case", "code"),
    [
        (("psk", "nobody-at-all", "nobody-at-all", "dm"), "lwm2m.admit.unknown"),
        (("psk", "lw-adm-0001", "lw-adm-0002", "bootstrap"), "lwm2m.admit.endpoint_mismatch"),
        (("psk", "lw-adm-0001", "lw-adm-0001", "dm"), "lwm2m.admit.bootstrap_only"),
        (("cert", "lw-adm-mqtt", "lw-adm-mqtt", "dm"), "lwm2m.admit.not_lwm2m"),
        (("cert", "lw-adm-0001", "lw-adm-0009", "dm"), "lwm2m.admit.endpoint_mismatch"),
    ],
    ids=["unknown", "endpoint-mismatch", "bootstrap-only", "not-lwm2m", "cert-mismatch"],
)
def test_admit_refuses(
    backend: ServiceLwm2mBackend, case: tuple[str, str, str, str], code: str
) -> None:
    mode, identity, endpoint, purpose = case
    with backend.rt.uow.begin(read_only=True) as tx:
        missing = tx.devices.get("lw-adm-0001") is None
    if missing:
        _device(backend, "lw-adm-0001")
        _device(backend, "lw-adm-mqtt", protocol="mqtt")
    peer = PeerIdentity(mode=mode, identity=identity, address=ADDR)  # type: ignore[arg-type]  # table
    with pytest.raises(PermissionDenied) as info:
        backend.admit(peer, endpoint=endpoint, purpose=purpose, now=NOW)  # type: ignore[arg-type]
    assert info.value.code == code


def test_registration_readings_and_revocation(backend: ServiceLwm2mBackend) -> None:
    _device(backend, "lw-reg-0001")
    cursor = backend.access_changes(0)[1]
    registration = Registration(
        device_id="lw-reg-0001", endpoint="lw-reg-0001", location="rd/0123456789abcdef",
        lifetime_s=300, binding="U", lwm2m_version="1.1", objects=("/3/0", "/3303/0"),
        address="127.0.0.1:40000", mode="cert", registered_at=NOW, updated_at=NOW,
    )  # fmt: skip
    backend.record_registration(registration, previous=None, now=NOW)
    readings = [Reading(path="/3303/0/5700", value=21.5, unit="Cel"), Reading(path="/x", value=1)]
    assert backend.store_readings("lw-reg-0001", readings, now=NOW) == 1
    backend.record_firmware_state("lw-reg-0001", version="1.0.0", state=0, result=1, now=NOW)
    backend.record_deregistration("lw-reg-0001", reason="deregistered", now=NOW)
    with backend.rt.uow.begin() as tx:
        stored = tx.lwm2m.registration("lw-reg-0001")
        rows = tx.telemetry.list_for_device("lw-reg-0001")
        types = [e.type for e in tx.events.list(subject="device:lw-reg-0001", limit=100)]
    assert stored is not None and stored.end_reason == "deregistered"
    assert stored.firmware_result == 1 and stored.objects == ("/3/0", "/3303/0")
    assert rows[0].metrics == {"temperature": 21.5}
    assert {"lwm2m.registered", "lwm2m.deregistered"} <= set(types)
    revoke_device(backend.rt, "lw-reg-0001", reason="keyCompromise", actor="test", now=NOW)
    with backend.rt.uow.begin(read_only=True) as tx:
        ended = [c.identity for c in tx.lwm2m.credentials("lw-reg-0001") if c.ended_at]
    assert ended == ["lw-reg-0001"]
    with backend.rt.uow.begin() as tx:  # a second call ends nothing more
        assert end_credentials(tx, "lw-reg-0001", reason="revoked", now=NOW) == []
    changed, after = backend.access_changes(cursor)
    assert "lw-reg-0001" in changed and after > cursor
    assert backend.psk_credential("lw-reg-0001") is None
    peer = PeerIdentity(mode="cert", identity="lw-reg-0001", address=ADDR)
    with pytest.raises(PermissionDenied):
        backend.admit(peer, endpoint="lw-reg-0001", purpose="dm", now=NOW)


def test_ciphertext_moved_to_another_identity_does_not_decrypt(
    backend: ServiceLwm2mBackend,
) -> None:
    identity = _device(backend, "lw-aad-0001")
    with backend.rt.uow.begin() as tx:
        stolen = tx.lwm2m.credential(identity)
        assert stolen is not None
        tx.lwm2m.add_credential(
            identity="lw-aad-0001:dm",
            device_id="lw-aad-0001",
            purpose="dm",
            ciphertext=stolen.ciphertext,
            nonce=stolen.nonce,
            now=NOW,
        )
    assert backend.psk_credential("lw-aad-0001:dm") is None  # AAD binds identity and device
    assert backend.psk_credential(identity) is not None
    assert backend.psk_credential("x" * 129) is None
