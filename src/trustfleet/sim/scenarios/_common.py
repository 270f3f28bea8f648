"""Shared pieces of the demo scenario: its constants, releases, campaigns and waits on state."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from trustfleet.errors import Unavailable
from trustfleet.services.campaigns import campaign_status, create_campaign
from trustfleet.services.ota import build_release, publish_release
from trustfleet.services.release_verify import verify_home_release
from trustfleet.sim.fleet import SimFleet, utc_now
from trustfleet.sim.image import build_image
from trustfleet.sim.process import wait_until

__all__ = [
    "AGENT_TIMEOUT_S",
    "ATTEST_WAIT_S",
    "CUT_OFF_TIMEOUT_S",
    "DEMO_ROLES",
    "IMAGE_BYTES",
    "UPDATE_TIMEOUT_S",
    "V1",
    "V2",
    "V3",
    "publish",
    "run_campaign",
    "wait_silent",
    "within",
]

AGENT_TIMEOUT_S = 60.0
UPDATE_TIMEOUT_S = 180.0
CUT_OFF_TIMEOUT_S = 10.0
ATTEST_WAIT_S = 60
IMAGE_BYTES = 8 * 1024 * 1024
V1, V2, V3 = "1.0.0", "1.1.0", "1.2.0"
DEMO_ROLES = ("revoked", "reenroller", "rollback", "tamper")
"""The devices the demo singles out; every other device is ``fleet``."""
_CAMPAIGN_POLL_S = 0.5


def publish(fleet: SimFleet, version: str) -> dict[str, Any]:
    """Make a simulator image, build and publish it as a release; what was published."""
    image = fleet.workdir / f"image-{version}.bin"
    info = build_image(image, version=version, size_bytes=IMAGE_BYTES, seed=fleet.model)
    rt = fleet.srv.runtime
    build_release(
        rt, image=image, version=version, model=fleet.model, min_version=None, now=utc_now()
    )
    record = publish_release(rt, model=fleet.model, version=version, now=utc_now())
    image.unlink()
    verdict = verify_home_release(rt, model=fleet.model, version=version)
    return {
        "version": record.version,
        "image_bytes": info.length,
        "targets_version": record.targets_version,
        "sbom_components": verdict.sbom.components if verdict.sbom is not None else None,
        "provenance_verified": verdict.ok,
        "builder": verdict.provenance.builder_id if verdict.provenance is not None else None,
        "findings": [f.code for f in verdict.findings],
    }


def run_campaign(
    fleet: SimFleet,
    devices: Sequence[str],
    *,
    waves: Sequence[float],
    version: str,
    max_failure_rate: float = 0.05,
) -> Any:
    """Create a campaign for ``devices`` and wait (bounded) until it ends; its last status.

    Raises:
        Unavailable: It still runs after ``UPDATE_TIMEOUT_S``.
    """
    rt = fleet.srv.runtime
    campaign = create_campaign(
        rt,
        version=version,
        model=fleet.model,
        devices=list(devices),
        waves=list(waves),
        max_failure_rate=max_failure_rate,
        now=utc_now(),
        device_timeout_s=int(UPDATE_TIMEOUT_S),
        actor="operator:demo",
    )

    def ended() -> Any:
        status = campaign_status(rt, campaign.id)
        return status if status.campaign.state != "running" else None

    what = f"campaign {campaign.id} to end"
    return wait_until(ended, timeout_s=UPDATE_TIMEOUT_S, what=what, poll_s=_CAMPAIGN_POLL_S)


def wait_silent(
    fleet: SimFleet, device_id: str, *, others: Sequence[str], rows: int, timeout_s: float
) -> bool:
    """Whether ``device_id`` adds no telemetry row while each of ``others`` adds ``rows``.

    The others' telemetry is the clock (no fixed sleep): windows are tried until one is
    silent or ``timeout_s`` of windows have passed.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        before = fleet.telemetry_counts()
        after = fleet.wait_telemetry(others, rows=rows, since=before, timeout_s=AGENT_TIMEOUT_S)
        if after[device_id] == before[device_id]:
            return True
    return False


def within(check: Callable[[], object]) -> bool:
    """Whether a bounded wait succeeded (its :class:`Unavailable` as False)."""
    try:
        check()
    except Unavailable:
        return False
    return True
