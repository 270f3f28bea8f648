"""A model's normal profile as arrays, built once per model and shared by its devices."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import Final

import numpy as np
import numpy.typing as npt

from trustfleet.monitoring._scenario_spec import ModelProfile, NumberProfile, SetProfile

DERIVED: Final = {
    "num-listening-tcp-ports": "listening-tcp-ports",
    "num-listening-udp-ports": "listening-udp-ports",
}
"""Counts that follow the size of a set unless the model gives them a profile."""


def model_hash(model: str, what: str) -> str:
    """A stable sha256 (hex) standing for one of a model's files or executables."""
    return hashlib.sha256(f"{model}/{what}".encode()).hexdigest()


@lru_cache(maxsize=1024)
def fixed_members(model: str, profile: SetProfile) -> frozenset[str]:
    """The members every device of the model always has (members, hashes, watched files)."""
    fixed = set(profile.members)
    fixed.update(model_hash(model, f"exe/{i}") for i in range(profile.hashes))
    fixed.update(f"{p}={model_hash(model, p)}" for p in profile.files)
    return frozenset(fixed)


class Tables:
    """The numeric profile of a model: one row per metric (profiles, then derived counts)."""

    def __init__(self, profile: ModelProfile) -> None:
        nums = list(profile.numbers)
        have = {p.metric for p in nums} | {s.metric for s in profile.sets}
        derived = [n for n, s in DERIVED.items() if s in have and n not in have]
        names = [p.metric for p in nums] + derived
        self.rows = {name: i for i, name in enumerate(names)}
        self.derived = [(self.rows[n], DERIVED[n]) for n in derived]
        self.device_idx = [i for i, n in enumerate(names) if not n.startswith("svc-")]
        self.service_idx = [i for i, n in enumerate(names) if n.startswith("svc-")]
        self.device_names = [names[i] for i in self.device_idx]
        self.service_names = [names[i] for i in self.service_idx]
        self.has_service = bool(self.service_idx) or any(
            s.metric.startswith("svc-") for s in profile.sets
        )
        self._arrays(nums, len(derived))

    def _arrays(self, nums: list[NumberProfile], n_derived: int) -> None:
        def column(values: list[float], pad: float) -> npt.NDArray[np.float64]:
            return np.array(values + [pad] * n_derived, dtype=np.float64)

        self.level = column([p.level for p in nums], 0.0)
        self.rhythm = np.array([p.rhythm for p in nums] + [(1.0,) * 24] * n_derived)
        self.sigma = column([p.sigma for p in nums], 0.0)[:, None]
        self.counter = np.array([p.counter for p in nums] + [False] * n_derived)
        kinds = [p.noise for p in nums] + ["none"] * n_derived
        self.lognormal = np.array([k == "lognormal" for k in kinds])[:, None]
        self.normal = np.array([k == "normal" for k in kinds])[:, None]
        self.poisson = np.array([k == "poisson" for k in kinds])
        self.spike_p = column([p.spike_probability for p in nums], 0.0)[:, None]
        self.spike_f = column([p.spike_factor for p in nums], 1.0)[:, None]
        self.syncs = [(i, p) for i, p in enumerate(nums) if p.sync_hour >= 0]
        self.low = column([p.minimum for p in nums], 0.0)[:, None]
        self.high = column([p.maximum for p in nums], 1e15)[:, None]
        self.integer = np.array([p.integer for p in nums] + [True] * n_derived)[:, None]


@lru_cache(maxsize=64)
def tables(profile: ModelProfile) -> Tables:
    """The (shared) tables of a model's profile."""
    return Tables(profile)
