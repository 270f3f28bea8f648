"""Factory provisioning: complete devices or nothing, keys in tokens, ids not enumerable."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from support.runtimes import home_runtime
from trustfleet.configfile.device import load_device_settings
from trustfleet.pki import DEVICE_ID_PATTERN
from trustfleet.services.factory import provision_devices
from trustfleet.services.runtime import Runtime
from trustfleet.settings.supply_chain import SupplyChainSettings

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


class Interrupted(KeyboardInterrupt):
    """Stands for Ctrl-C (or a crash) in the middle of provisioning."""


@pytest.fixture(scope="module")
def rt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    yield from home_runtime(tmp_path_factory, "factory", organization="Factory Test", now=NOW)


def test_devices_get_random_ids_and_complete_folders(rt: Runtime, tmp_path: Path) -> None:
    made = provision_devices(rt, out_dir=tmp_path, count=5, model="m1", now=NOW)
    ids = [d.device_id for d in made]
    assert len(set(ids)) == 5
    assert all(DEVICE_ID_PATTERN.fullmatch(i) for i in ids)
    for device in made:
        folder = tmp_path / device.device_id
        for name in (
            "device.toml",
            "idevid.pem",
            "ca-bundle.pem",
            "softhsm2.conf",
            "secrets/token.pin",
        ):
            assert (folder / name).is_file(), name
        assert (folder / "secrets" / "token.pin").stat().st_mode & 0o077 == 0
        assert not list(folder.rglob("*.key")), "no private key file may exist"
    with rt.uow.begin(read_only=True) as tx:
        states = {tx.devices.require(i).state for i in ids}
        events = tx.events.list(type="device.registered", limit=1000)
    assert states == {"manufactured"}
    assert {e.subject for e in events} >= {f"device:{i}" for i in ids}


def test_interrupted_provisioning_leaves_only_complete_devices(rt: Runtime, tmp_path: Path) -> None:
    registered: list[str] = []

    def progress(kind: str) -> None:
        if kind == "device":
            registered.append("x")
            if len(registered) == 2:
                raise Interrupted

    with rt.uow.begin(read_only=True) as tx:
        before = tx.devices.count()
    with pytest.raises(Interrupted):
        provision_devices(rt, out_dir=tmp_path, count=4, model="m1", now=NOW, on_progress=progress)
    with rt.uow.begin(read_only=True) as tx:
        after = tx.devices.count()
        present = [p.name for p in tmp_path.iterdir()]
        rows = [tx.devices.get(name) for name in present]
    # Two devices finished registration before the interruption; they stay, whole.
    assert after - before == 2
    assert len(present) == 2
    assert all(row is not None for row in rows)


def test_devices_get_their_models_builder_policy(rt: Runtime, tmp_path: Path) -> None:
    """device.toml [ota] allowed_builders = [supply_chain] builders_for(model); else empty."""
    saved = rt.settings
    chain = SupplyChainSettings(
        allowed_builders=["m2=urn:example:builder:ci", "m3=urn:other", "m2=urn:example:b2"],
        max_provenance_bytes=64 * 1024,
    )
    rt.settings = saved.model_copy(update={"supply_chain": chain})
    try:
        (policed,) = provision_devices(rt, out_dir=tmp_path / "p", count=1, model="m2", now=NOW)
        (free,) = provision_devices(rt, out_dir=tmp_path / "f", count=1, model="m1", now=NOW)
    finally:
        rt.settings = saved
    assert policed.allowed_builders == ("urn:example:builder:ci", "urn:example:b2")
    ota = load_device_settings(tmp_path / "p" / policed.device_id).ota
    assert ota.allowed_builders == ["urn:example:builder:ci", "urn:example:b2"]
    assert ota.max_provenance_bytes == 64 * 1024
    assert free.allowed_builders == ()
    assert load_device_settings(tmp_path / "f" / free.device_id).ota.allowed_builders == []
