"""The detection pipeline's settings (a frozen dataclass; the monitor builds it from settings)."""

from __future__ import annotations

from dataclasses import dataclass, field

from trustfleet.monitoring._model import ModelParams

__all__ = ["DetectorConfig"]


@dataclass(frozen=True)
class DetectorConfig:
    """The detection pipeline's settings (H4 builds it from ``[monitoring]``).

    Attributes:
        learning_s: How long a device (baselines, sets) and a cohort (model) learn first.
        z_device: A metric counts when above the device's expected value by this many spreads…
        z_cohort: …and above the cohort's hour-of-day profile by this many of its spreads…
        z_cohort_alone: Or far above the cohort's profile (and somewhat above the device's).
        min_ratio: …and at least this many times the expected value.
        z_joint: Two or more metrics of a window above their device's baselines by this many
            spreads (and min_ratio) count together.
        cohort_known_devices: A member seen by this many devices of the cohort while they
            learned is not new to any of them.
        new_destination_windows: A lone new destination is raised once seen in this many
            windows (two or more new ones in a window are raised at once).
        known_prefixes: A new address in a /24 (/64) the device or its cohort used while
            learning is not new (CDN and pool churn).
        sustained_s: A metric above its device's baseline (by ``z_sustained`` spreads and
            ``sustained_ratio``) in every window for this long is raised even when no single
            window is extreme (a miner's CPU, a slow ramp).
        z_sustained: See ``sustained_s``.
        drift_ratio: A metric this many times the device's reference level (its level when
            learning ended, followed with ``reference_alpha``) for ``sustained_s`` is raised
            too: a baseline that followed a slow ramp does not hide it.
        reference_alpha: EWMA weight with which the reference follows the device's level.
        sustained_ratio: How many times its expected value such a metric must be.
        scan_destinations: New destinations in one window that make a scan (high).
        beacon_windows: Regular windows with a new destination that make a beacon.
        beacon_max_cv: The most irregularity (gap stddev / mean) a beacon may have.
        max_devices: Devices kept in memory (the least recently seen go first).
        max_members: Members remembered per set per device (and flagged ones).
        model: Whether the IsolationForest runs.
        service_model: Whether it also scores service windows (off: their sparse counts made
            it raise false alarms on the built-in scenarios; baselines and rules cover them).
        model_params: Its constants.
        model_batch: Queued windows that trigger a batch scoring.
        model_max_delay_s: The longest (simulated) delay before a queued window is scored.
        device_alpha: EWMA weight in a device's level.
        cohort_alpha: EWMA weight in a cohort's time-of-day profile.
        season_slot_s: The time-of-day profile's resolution (1800: half hours; divides a day).
    """

    learning_s: float = 24 * 3600.0
    z_device: float = 6.0
    z_cohort: float = 3.0
    z_cohort_alone: float = 12.0
    z_joint: float = 4.0
    min_ratio: float = 3.0
    cohort_known_devices: int = 2
    new_destination_windows: int = 2
    known_prefixes: bool = True
    sustained_s: float = 3600.0
    sustained_ratio: float = 1.5
    z_sustained: float = 3.0
    drift_ratio: float = 3.0
    reference_alpha: float = 0.002
    scan_destinations: int = 8
    beacon_windows: int = 6
    beacon_max_cv: float = 0.1
    max_devices: int = 100_000
    max_members: int = 512
    model: bool = True
    service_model: bool = False
    model_params: ModelParams = field(default_factory=ModelParams)
    model_batch: int = 512
    model_max_delay_s: float = 900.0
    device_alpha: float = 0.02
    cohort_alpha: float = 0.01
    season_slot_s: int = 1800
