"""Firmware over LwM2M with the service: a campaign wave sends no MQTT command to an LwM2M device
(its job appears for the LwM2M server instead), object 5 State/Update Result move its campaign
row, success needs Result 1 and the new version, Results 2..9 fail with the code's name."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from support.server import init_home
from trustfleet.services.campaigns import tick
from trustfleet.services.lwm2m import ServiceLwm2mBackend, lwm2m_backend
from trustfleet.settings.server import load_server_settings
from trustfleet.sim.process import free_port
from trustfleet.store import NewCampaignDevice

NOW = datetime.now(UTC)  # real time: the home has real certificates (any date works)
MODEL = "lw-model"
SHA = "ab" * 32


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceLwm2mBackend]:
    home: Path = tmp_path_factory.mktemp("lwm2m-firmware") / "home"
    init_home(home, port=free_port())
    with lwm2m_backend(load_server_settings(home)) as b:
        with b.rt.uow.begin() as tx:
            tx.releases.add(
                model=MODEL,
                version="1.1.0",
                min_version="0.0.0",
                image_sha256=SHA,
                image_length=4096,
                manifest=b"{}",
                targets_version=2,
                now=NOW,
            )
            tx.lwm2m.add_manifest(
                model=MODEL, version="1.1.0", sequence=1, manifest=b"\xd2cose", now=NOW
            )
        yield b


def _campaign(b: ServiceLwm2mBackend, name: str, devices: dict[str, str]) -> str:
    with b.rt.uow.begin() as tx:
        for device_id, protocol in devices.items():
            tx.devices.add(id=device_id, model=MODEL, state="enrolled", protocol=protocol, now=NOW)
        tx.campaigns.add(id=name, model=MODEL, version="1.1.0", waves=[100.0],
                         max_failure_rate=1.0, device_timeout_s=3600, now=NOW)  # fmt: skip
        tx.campaigns.add_devices(name, [NewCampaignDevice(device_id=d, wave=1) for d in devices],
                                 now=NOW)  # fmt: skip
    return name


def _row_state(b: ServiceLwm2mBackend, campaign: str, device_id: str) -> tuple[Any, ...]:
    with b.rt.uow.begin(read_only=True) as tx:
        row = tx.campaigns.device(campaign, device_id)
        device = tx.devices.require(device_id)
    assert row is not None
    return row.state, row.code, device.firmware_version


def test_wave_skips_mqtt_and_success_needs_the_version(backend: ServiceLwm2mBackend) -> None:
    campaign = _campaign(backend, "c-ok", {"lw-fw-0001": "lwm2m", "mq-fw-0001": "mqtt"})
    assert backend.firmware_job("lw-fw-0001", now=NOW) is None  # not notified yet
    sent: list[str] = []
    tick(backend.rt, now=NOW, send=lambda device_id, _args: sent.append(device_id))
    assert sent == ["mq-fw-0001"]
    job = backend.firmware_job("lw-fw-0001", now=NOW)
    assert job is not None and job.campaign_id == campaign and job.manifest == b"\xd2cose"
    assert job.package_uri.endswith(f"/fw/{MODEL}/1.1.0/manifest") and job.image_sha256 == SHA
    assert job.image.name == f"{SHA}.image.bin" and job.image_size == 4096
    backend.record_firmware_state("lw-fw-0001", version="1.0.0", state=1, result=0, now=NOW)
    assert _row_state(backend, campaign, "lw-fw-0001")[0] == "downloading"
    backend.record_firmware_state("lw-fw-0001", version="1.0.0", state=0, result=1, now=NOW)
    assert _row_state(backend, campaign, "lw-fw-0001")[0] == "installing"  # old version still
    backend.record_firmware_state("lw-fw-0001", version="1.1.0", state=0, result=1, now=NOW)
    assert _row_state(backend, campaign, "lw-fw-0001") == ("committed", None, "1.1.0")
    assert backend.firmware_job("lw-fw-0001", now=NOW) is None


@pytest.mark.parametrize(
    ("result", "code"),
    [
        (5, "lwm2m.firmware.integrity_check_failure"),
        (7, "lwm2m.firmware.invalid_uri"),
        (2, "lwm2m.firmware.not_enough_flash"),
    ],
    ids=["integrity", "invalid-uri", "flash"],
)
def test_failure_results(backend: ServiceLwm2mBackend, result: int, code: str) -> None:
    device_id = f"lw-fail-{result:04d}"
    campaign = _campaign(backend, f"c-fail-{result}", {device_id: "lwm2m"})
    tick(backend.rt, now=NOW, send=lambda *_a: None)
    backend.record_firmware_state(device_id, version="1.0.0", state=0, result=result, now=NOW)
    assert _row_state(backend, campaign, device_id) == ("failed", code, None)


def test_package_of_unsigned_or_unknown_release(backend: ServiceLwm2mBackend) -> None:
    assert backend.firmware_package(MODEL, "9.9.9") is None
    assert backend.firmware_package(MODEL, "1.1.0") is not None
