"""Per-device and per-cohort detection state (bounded), and the metrics it tracks."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Final

from trustfleet.monitoring._baseline import Level, Season
from trustfleet.monitoring._model import CohortModel, ModelParams

__all__ = [
    "DEVICE_FEATURES",
    "DEVICE_TRACKED",
    "RATIO",
    "SERVICE_FEATURES",
    "SERVICE_TRACKED",
    "Cohort",
    "Device",
    "floors_for",
]

RATIO: Final = "out-in-ratio"
"""A derived metric: log(bytes out + 1) - log(bytes in + 1)."""

DEVICE_TRACKED: Final[tuple[str, ...]] = (
    "all-bytes-out",
    "all-bytes-in",
    "all-packets-out",
    "all-packets-in",
    "num-established-tcp-connections",
    "num-processes",
    "cpu-percent",
    "memory-percent",
    "failed-logins",
)
"""Device metrics with a baseline (plus :data:`RATIO`, computed)."""

SERVICE_TRACKED: Final[tuple[str, ...]] = (
    "svc-connect-attempts",
    "svc-connect-refusals",
    "svc-disconnects",
    "svc-authz-failures",
    "svc-messages-in",
    "svc-bytes-in",
    "svc-est-refusals",
    "svc-attestation-findings",
    "svc-missed-challenges",
)
"""Service metrics with a baseline."""

DEVICE_FEATURES: Final[tuple[str, ...]] = (
    *(f"z:{m}" for m in (*DEVICE_TRACKED, RATIO)),
    "new-destinations",
    "new-remote-ports",
    "new-listening-ports",
    "new-executables",
    "watched-file-changes",
    "connection-churn",
)
"""The model's features of a device window (z: deviation from the device's baseline)."""

SERVICE_FEATURES: Final[tuple[str, ...]] = (
    *(f"z:{m}" for m in SERVICE_TRACKED),
    "new-source-addresses",
)
"""The model's features of a service window."""

_FLOORS: Final = {
    "cpu-percent": 0.25,
    "memory-percent": 0.25,
    "num-processes": 0.2,
    "num-established-tcp-connections": 0.3,
    RATIO: 0.4,
}
_COUNT_FLOOR: Final = 0.35
_VOLUME_FLOOR: Final = 0.3


def floors_for(names: tuple[str, ...]) -> tuple[float, ...]:
    """The least spread (log space) of each metric."""
    out = []
    for name in names:
        if name in _FLOORS:
            out.append(_FLOORS[name])
        elif "bytes" in name or "packets" in name or name == "svc-messages-in":
            out.append(_VOLUME_FLOOR)
        else:
            out.append(_COUNT_FLOOR)
    return tuple(out)


class Device:
    """What the detector remembers of one device."""

    __slots__ = (
        "beacons",
        "files",
        "files_seen",
        "first",
        "flagged",
        "known",
        "last",
        "level",
        "model",
        "novel",
        "prev_endpoints",
        "prev_ports",
        "reference",
        "streaks",
        "svc_level",
    )

    def __init__(self, model: str, first: float) -> None:
        self.model = model
        self.first = first
        self.last = first
        self.level = Level(len(DEVICE_TRACKED) + 1)
        self.svc_level = Level(len(SERVICE_TRACKED))
        self.known: dict[str, set[str]] = {}
        self.flagged: dict[str, set[str]] = {}
        self.files: dict[str, str] = {}
        self.files_seen: frozenset[str] = frozenset()
        self.prev_endpoints: frozenset[str] = frozenset()
        self.prev_ports: frozenset[str] = frozenset()
        self.novel: dict[str, list[float]] = {}
        self.beacons: set[str] = set()
        self.streaks: dict[int, float] = {}  # metric index -> when its sustained run began
        self.reference: list[float] = []  # the level when learning ended, followed slowly

    def nbytes(self) -> int:
        """Approximate memory (bytes)."""
        size = 400 + self.level.nbytes() + self.svc_level.nbytes() + 56 + 32 * len(self.reference)
        for members in self.known.values():  # interned: a set slot and a share of the string
            size += 216 + 40 * len(members)
        for members in self.flagged.values():
            size += 216 + sum(90 + len(m) for m in members)
        size += sum(180 + len(p) + len(h) for p, h in self.files.items())
        size += sum(200 + 8 * len(t) for t in self.novel.values())
        size += 216 + 90 * (len(self.beacons) + len(self.prev_endpoints) + len(self.prev_ports))
        return size


class Cohort:
    """What the detector learns of one model: profiles, members, forests."""

    __slots__ = ("first", "fitted", "members", "model", "season", "svc_model", "svc_season")

    def __init__(self, name: str, first: float, params: ModelParams, *, slots: int) -> None:
        self.first = first
        self.fitted = False
        self.season = Season(len(DEVICE_TRACKED) + 1, slots)
        self.svc_season = Season(len(SERVICE_TRACKED), slots)
        self.members: dict[str, dict[str, int]] = {}
        self.model = CohortModel(DEVICE_FEATURES, params, salt=f"{name}:device")
        self.svc_model = CohortModel(SERVICE_FEATURES, params, salt=f"{name}:service")

    def nbytes(self) -> int:
        """Approximate memory (bytes)."""
        size = self.season.nbytes() + self.svc_season.nbytes()
        size += self.model.nbytes() + self.svc_model.nbytes()
        for counts in self.members.values():
            size += sum(100 + len(m) for m in counts)
        return size


def log_values(numbers: Mapping[str, float], names: tuple[str, ...]) -> list[float | None]:
    """The named metrics in log space (None when absent, negative or not finite)."""
    get, log1p, inf = numbers.get, math.log1p, math.inf
    return [log1p(v) if (v := get(n)) is not None and 0 <= v < inf else None for n in names]
