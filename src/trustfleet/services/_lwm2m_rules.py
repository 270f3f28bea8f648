"""Pure rules of the LwM2M backend: metric names of readings, firmware results to campaign
states, the event types that change a device's access."""

from __future__ import annotations

import re
from typing import Final

__all__ = [
    "ACCESS_EVENT_TYPES",
    "FIRMWARE_RESULT_NAMES",
    "campaign_state",
    "metric_name",
]

ACCESS_EVENT_TYPES: Final[tuple[str, ...]] = (
    "device.revoked",
    "device.decommissioned",
    "device.quarantined",
    "device.released",
    "lwm2m.credential.created",
    "lwm2m.credential.ended",
)
"""Security events after which the LwM2M server re-checks a device's sessions."""

_WELL_KNOWN: Final[dict[tuple[str, str], str]] = {
    ("3303", "5700"): "temperature",
    ("3304", "5700"): "humidity",
    ("3315", "5700"): "pressure",
    ("3", "9"): "battery_level",
    ("3", "7"): "supply_voltage",
}
_PATH = re.compile(r"/(\d{1,5})/(\d{1,5})/(\d{1,5})(?:/(\d{1,5}))?")

FIRMWARE_RESULT_NAMES: Final[dict[int, str]] = {
    0: "initial",
    1: "success",
    2: "not_enough_flash",
    3: "out_of_ram",
    4: "connection_lost",
    5: "integrity_check_failure",
    6: "unsupported_package_type",
    7: "invalid_uri",
    8: "update_failed",
    9: "unsupported_protocol",
}
"""Firmware Update object 5, Update Result (/5/0/5), OMA LwM2M 1.1 Core Appendix E.6."""


def metric_name(path: str) -> str | None:
    """The telemetry metric name of a resource path, or None if it is not a resource path.

    Instance 0 of a well-known sensor resource gets its plain name (``temperature`` for
    ``/3303/0/5700``), other instances ``temperature_<n>``; anything else ``lwm2m:<path>``.
    """
    match = _PATH.fullmatch(path)
    if match is None:
        return None
    obj, inst, res, _ = match.groups()
    name = _WELL_KNOWN.get((obj, res))
    if name is None:
        return f"lwm2m:{path}"
    return name if inst == "0" else f"{name}_{inst}"


def campaign_state(
    *, state: int, result: int, version: str | None, target: str
) -> tuple[str, str | None]:
    """The campaign device state of object 5's State and Update Result, and a failure reason.

    Success needs Update Result 1 *and* the device reporting the release's version; results 2..9
    fail with the code's name. State 1 (downloading), 2 (downloaded), 3 (updating).
    """
    if result == 1:
        if version == target:
            return "committed", None
        return "installing", None
    if 2 <= result <= 9:
        return "failed", FIRMWARE_RESULT_NAMES[result]
    if result not in FIRMWARE_RESULT_NAMES:
        return "failed", f"result_{result}"
    return {1: ("downloading", None), 2: ("installing", None), 3: ("installing", None)}.get(
        state, ("notified", None)
    )
