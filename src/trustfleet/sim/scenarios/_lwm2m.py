"""The demo's constrained-device stage: LwM2M over CoAP and DTLS beside the MQTT fleet.

A device made by the factory for LwM2M in certificate mode enrolls (its LDevID, key in its
token), registers with the server's LwM2M endpoint over DTLS, reports a sensor value into the
telemetry store, takes a firmware update (a release for its model and a campaign, the image
pulled block-wise under a signed manifest), and after revocation its session is closed and it
cannot register again. Every wait is on the store (registration, telemetry rows, the campaign),
never a sleep.
"""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path
from typing import Any

from trustfleet.services.campaigns import campaign_status, create_campaign
from trustfleet.services.ota import build_release, publish_release
from trustfleet.services.revocation import revoke_device
from trustfleet.sim.agent import SimAgent
from trustfleet.sim.fleet import SimFleet, utc_now
from trustfleet.sim.image import build_image
from trustfleet.sim.process import ManagedProcess, wait_until
from trustfleet.sim.scenarios._result import Observed, stage

__all__ = ["LWM2M_MODEL", "demo_lwm2m_settings", "lwm2m"]

LWM2M_MODEL = "lwm2m-v1"
"""The constrained devices' hardware model (their releases are their own)."""
LWM2M_V1, LWM2M_V2 = "1.0.0", "1.0.1"
IMAGE_BYTES = 64 * 1024
"""A constrained device's image: small enough for block-wise CoAP in a demo."""
WAIT_S = 60.0
UPDATE_WAIT_S = 180.0
POLL_S = 0.2
ONCE_TIMEOUT_S = 60.0


def demo_lwm2m_settings() -> dict[str, dict[str, Any]]:
    """The ``[lwm2m]`` settings of the demo's home: enabled on a UDP port free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return {"lwm2m": {"enabled": True, "port": port, "revocation_poll_s": 0.5}}


def _publish(fleet: SimFleet, version: str) -> str:
    image = fleet.workdir / f"lwm2m-image-{version}.bin"
    build_image(image, version=version, size_bytes=IMAGE_BYTES, seed=LWM2M_MODEL)
    rt = fleet.srv.runtime
    build_release(
        rt, image=image, version=version, model=LWM2M_MODEL, min_version=None, now=utc_now()
    )
    record = publish_release(rt, model=LWM2M_MODEL, version=version, now=utc_now())
    image.unlink()
    return str(record.version)


def _registration(fleet: SimFleet, device_id: str) -> Any:
    with fleet.srv.runtime.uow.begin(read_only=True) as tx:
        record = tx.lwm2m.registration(device_id)  # type: ignore[attr-defined,unused-ignore]
    return record if record is not None and record.ended_at is None else None


def _telemetry_rows(fleet: SimFleet, device_id: str) -> int:
    with fleet.srv.runtime.uow.begin(read_only=True) as tx:
        return int(tx.telemetry.count(device_id=device_id))


def _device_process(fleet: SimFleet, directory: Path, *, once: bool = False) -> list[str]:
    argv = [sys.executable, "-m", "trustfleet.sim.lwm2m_device", "--device", str(directory)]
    return [*argv, "--once", "--json"] if once else argv


@stage("lwm2m")
def lwm2m(fleet: SimFleet) -> Observed:
    """A constrained device in certificate mode registers over DTLS, reports a value, takes a
    firmware update under a signed manifest, and is refused after revocation."""
    made = fleet.srv.cli("factory", "provision", "--out", str(fleet.workdir / "lwm2m-devices"),
                         "--model", LWM2M_MODEL, "--protocol", "lwm2m", "--security", "cert",
                         "--no-bootstrap", "--json")  # fmt: skip
    if made.returncode != 0:
        raise RuntimeError(f"factory provision --protocol lwm2m: {made.stderr.strip()[-200:]}")
    (row,) = json.loads(made.stdout)["devices"]
    device_id, directory = row["device_id"], Path(row["directory"])
    enrolled = SimAgent(directory).enroll()
    if enrolled.returncode != 0:
        raise RuntimeError(f"LDevID enrollment: {enrolled.stderr.strip()[-200:]}")
    _publish(fleet, LWM2M_V1)
    device = ManagedProcess(
        _device_process(fleet, directory), log=fleet.workdir / f"lwm2m-{device_id}.log",
        name=f"lwm2m {device_id}",
    )  # fmt: skip
    with device:
        reg = wait_until(
            lambda: _registration(fleet, device_id), timeout_s=WAIT_S,
            what="LwM2M registration", poll_s=POLL_S,
        )  # fmt: skip
        wait_until(
            lambda: _telemetry_rows(fleet, device_id) > 0, timeout_s=WAIT_S,
            what="an LwM2M reading in the telemetry store", poll_s=POLL_S,
        )  # fmt: skip
        version = _publish(fleet, LWM2M_V2)
        campaign = create_campaign(
            fleet.srv.runtime, version=version, model=LWM2M_MODEL, devices=[device_id],
            waves=[100.0], max_failure_rate=0.0, now=utc_now(),
            device_timeout_s=int(UPDATE_WAIT_S), actor="operator:demo",
        )  # fmt: skip

        def ended() -> Any:
            status = campaign_status(fleet.srv.runtime, campaign.id)
            return status if status.campaign.state != "running" else None

        status = wait_until(
            ended, timeout_s=UPDATE_WAIT_S, what="the LwM2M campaign to end", poll_s=POLL_S
        )
        updated = _registration(fleet, device_id)
        revoke_device(
            fleet.srv.runtime, device_id, reason="keyCompromise", actor="operator:demo",
            now=utc_now(),
        )  # fmt: skip
        wait_until(
            lambda: _registration(fleet, device_id) is None, timeout_s=WAIT_S,
            what="the revoked device's registration to end", poll_s=POLL_S,
        )  # fmt: skip
    again = ManagedProcess(
        _device_process(fleet, directory, once=True),
        log=fleet.workdir / f"lwm2m-{device_id}-again.log",
        name=f"lwm2m {device_id} again",
    ).start()
    try:
        wait_until(
            lambda: not again.running, timeout_s=ONCE_TIMEOUT_S, what="the refused device to stop"
        )
        refused = again.proc is not None and again.proc.returncode != 0
    finally:
        again.stop()
    return Observed(
        {
            "it registered over DTLS with its LDevID": reg.mode == "cert",
            "a reading reached the telemetry store": True,
            "the firmware campaign completed": status.campaign.state == "completed",
            f"it runs {version}": updated is not None and updated.firmware_version == version,
            "after revocation it cannot register": refused,
        },
        {
            "device": device_id,
            "objects": list(reg.objects),
            "campaign": campaign.id,
            "firmware": None if updated is None else updated.firmware_version,
        },
    )
