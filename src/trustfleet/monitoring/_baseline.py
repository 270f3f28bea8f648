"""Statistical baselines of numeric metrics: a cohort's hour-of-day profile, a device's level.

Values are compared in log space (``log1p``), so a baseline is multiplicative: "three times
the usual bytes out at this hour". The model cohort learns, per metric and hour of day (UTC),
an EWMA of the value and of its absolute deviation (the seasonal profile and its spread); each
device learns an EWMA of its residual from that profile (its own level) and of the residual's
absolute deviation. Updates are winsorised (a residual beyond ``clip`` spreads counts as
``clip`` spreads, with a tenth of the weight), so an attack moves a baseline slowly while a
lasting change of behaviour is still learned. Plain lists of floats keep the per-record cost
and the memory small.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["BaselineParams", "Level", "Score", "Season", "update_and_score"]

HOURS: Final = 24
_WARM: Final = 12
_BORROWED: Final = 4
"""The weight (in windows) of a profile borrowed from the previous hour."""
_SLOW: Final = 0.1
"""How much less an outlier (beyond `clip` spreads) weighs in a baseline."""


@dataclass(frozen=True)
class BaselineParams:
    """The constants of the baseline maths.

    Attributes:
        device_alpha: EWMA weight of a new window in a device's level.
        cohort_alpha: EWMA weight of a new window in a cohort's hour-of-day profile.
        clip: Residuals are winsorised at this many spreads before they are learned.
        floors: Per metric, the least spread (log space): a metric that never moves still
            needs this much change to count.
    """

    device_alpha: float = 0.02
    cohort_alpha: float = 0.01
    clip: float = 4.0
    floors: tuple[float, ...] = ()


class Season:
    """A cohort's time-of-day profile of M metrics: mean and absolute deviation per slot of the
    day (``slots`` of them: 24 are hours, 48 half hours)."""

    __slots__ = ("count", "mean", "spread")

    def __init__(self, metrics: int, slots: int = HOURS) -> None:
        self.mean = [[0.0] * metrics for _ in range(slots)]
        self.spread = [[0.0] * metrics for _ in range(slots)]
        self.count = [0] * slots

    def nbytes(self) -> int:
        """Approximate memory (bytes)."""
        return len(self.count) * (len(self.mean[0]) * 2 * 32 + 32)


class Level:
    """A device's level of M metrics against its cohort's profile."""

    __slots__ = ("count", "mean", "spread")

    def __init__(self, metrics: int) -> None:
        self.mean = [0.0] * metrics
        self.spread = [0.0] * metrics
        self.count = 0

    def nbytes(self) -> int:
        """Approximate memory (bytes)."""
        return 2 * (56 + len(self.mean) * 32) + 48


@dataclass(frozen=True, slots=True)
class Score:
    """A window's deviation from the baselines (log space), metric by metric.

    Attributes:
        device_z: Residual from the device's own expected value, in its spreads (clipped to
            ±30, a model feature).
        lift: Residual from the device's own expected value (log space: log of the ratio),
            0.0 for a metric not reported.
        hot: (metric index, device z, cohort z, expected value, device spread) of the metrics
            whose device and cohort z both exceed ``hot_z``: the candidates for a finding.
    """

    device_z: list[float]
    hot: list[tuple[int, float, float, float, float]]
    lift: list[float]


def update_and_score(
    xs: list[float | None],
    hour: int,
    season: Season,
    level: Level,
    params: BaselineParams,
    *,
    hot_z: float = 3.0,
) -> Score:
    """Score a window against the baselines, then learn it.

    Args:
        xs: The window's metrics in log space (None: not reported).
        hour: The slot of the day (0..slots-1) of the window's end.
        season: The cohort's profile (updated in place).
        level: The device's level (updated in place).
        params: The constants.
        hot_z: Report a metric's detail when both its z exceed this.

    Returns:
        The window's deviations, computed before learning it.
    """
    if season.count[hour] == 0:
        _open_hour(season, hour)
    s_mean, s_spread = season.mean[hour], season.spread[hour]
    s_n, d_n = season.count[hour], level.count
    d_mean, d_spread = level.mean, level.spread
    a_c = max(params.cohort_alpha, 1.0 / (s_n + 1))
    a_d = max(params.device_alpha, 1.0 / (d_n + 1))
    slow_c, slow_d = a_c * _SLOW, a_d * _SLOW
    clip, floors = params.clip, params.floors
    warm = s_n >= _WARM and d_n >= _WARM
    dz: list[float] = []
    lift = [0.0] * len(xs)
    hot: list[tuple[int, float, float, float, float]] = []
    for i, x in enumerate(xs):
        if x is None:
            dz.append(0.0)
            continue
        floor = floors[i]
        rc = x - s_mean[i]
        c_sp = s_spread[i] + floor
        r = rc - d_mean[i]
        d_sp = d_spread[i] + floor
        z = r / d_sp
        lift[i] = r
        dz.append(30.0 if z > 30.0 else (-30.0 if z < -30.0 else z))
        if z > hot_z and rc > hot_z * c_sp:
            hot.append((i, z, rc / c_sp, x - r, d_sp))
        if not warm:
            _learn_cold((s_mean, s_spread), i, rc, s_n, a_c)
            _learn_cold((d_mean, d_spread), i, r, d_n, a_d)
            continue
        lim = clip * c_sp
        if rc > lim or rc < -lim:  # an outlier: learned slowly, as `clip` spreads
            rc = lim if rc > 0 else -lim
            s_mean[i] += slow_c * rc
            s_spread[i] += slow_c * (lim - s_spread[i])
        else:
            s_mean[i] += a_c * rc
            s_spread[i] += a_c * ((rc if rc > 0 else -rc) - s_spread[i])
        lim = clip * d_sp
        if r > lim or r < -lim:
            r = lim if r > 0 else -lim
            d_mean[i] += slow_d * r
            d_spread[i] += slow_d * (lim - d_spread[i])
        else:
            d_mean[i] += a_d * r
            d_spread[i] += a_d * ((r if r > 0 else -r) - d_spread[i])
    season.count[hour] = s_n + 1
    level.count = d_n + 1
    return Score(device_z=dz, hot=hot, lift=lift)


def _open_hour(season: Season, hour: int) -> None:
    """Start a slot's profile from the last slot learned (not from one device's window)."""
    slots = len(season.count)
    for back in range(1, slots):
        prev = (hour - back) % slots
        if season.count[prev]:
            season.mean[hour] = list(season.mean[prev])
            season.spread[hour] = list(season.spread[prev])
            season.count[hour] = _BORROWED
            return


def _learn_cold(
    pair: tuple[list[float], list[float]], i: int, res: float, n: int, a: float
) -> None:
    """Learn one metric while a baseline is young: the first window sets the mean, then plain
    (not winsorised) means until it is warm.

    Args:
        pair: The baseline's mean and spread lists.
        i: The metric's index.
        res: The window's residual from the mean.
        n: Windows learned so far.
        a: The EWMA weight.
    """
    mean, spread = pair
    if n == 0:
        mean[i] += res
        return
    mean[i] += a * res
    spread[i] += a * (abs(res) - spread[i])
