"""One simulated device following a scenario: its windows, computed a block at a time.

Numbers are drawn with numpy for a block of windows at once (rhythm x level x noise, rare benign
spikes, the nightly sync, then the attack's changes); set-valued metrics per window from the
model's fixed members and pools. Every block is seeded by (seed, device, interval, block), so a
window's values do not depend on the order windows are asked for.
"""

from __future__ import annotations

import hashlib
import ipaddress
import random
import zlib
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Final, cast

import numpy as np
import numpy.typing as npt

from trustfleet.monitoring._profile_tables import fixed_members, tables
from trustfleet.monitoring._scenario_spec import Effect, Scenario, SetProfile
from trustfleet.monitoring.records import MetricsRecord

_BLOCK: Final = 16
"""Windows computed at once per device."""
_MAX_SHARED_UNIONS: Final = 64
_FIRST_OCTETS: Final = tuple(
    a for a in range(1, 224) if a not in (10, 100, 127, 169, 172, 192, 198, 203)
)
"""First octets of random public IPv4 addresses (no private, loopback, test or CGN ranges)."""

Floats = npt.NDArray[np.float64]


@dataclass(frozen=True)
class DevicePlan:
    """One device of a fleet: its model and its attacks (index, onset and end in seconds)."""

    model: str
    attacks: tuple[tuple[int, float, float], ...]


@lru_cache(maxsize=16)
def fleet_plan(scenario: Scenario, *, devices: int, seed: int) -> tuple[DevicePlan, ...]:
    """Which model each device is and which attacks hit it (deterministic in the seed).

    Models get devices by their share (largest remainder), mixed in a seeded order. Each attack
    takes ``devices`` (or ``fraction`` of the eligible) devices of its models that no earlier
    attack took, so every class is on different devices.
    """
    models = _assign_models(scenario, devices=devices, seed=seed)
    taken: dict[int, list[tuple[int, float, float]]] = {}
    for index, attack in enumerate(scenario.attacks):
        eligible = [
            i for i, m in enumerate(models)
            if i not in taken and (not attack.models or m in attack.models)
        ]  # fmt: skip
        want = attack.devices or max(1, round(attack.fraction * len(eligible)))
        rng = _rng(f"{seed}/attack/{index}/{attack.attack_class}")
        for device in sorted(rng.sample(eligible, min(want, len(eligible)))):
            onset_h = _rng(f"{seed}/onset/{attack.attack_class}/{device}").uniform(*attack.onset_h)
            onset_s = float(round(onset_h * 3600))
            span = (index, onset_s, onset_s + round(attack.duration_h * 3600))
            taken.setdefault(device, []).append(span)
    return tuple(DevicePlan(m, tuple(taken.get(i, ()))) for i, m in enumerate(models))


def _assign_models(scenario: Scenario, *, devices: int, seed: int) -> list[str]:
    total = sum(m.share for m in scenario.models)
    exact = [(m.name, m.share / total * devices) for m in scenario.models]
    counts = {name: int(x) for name, x in exact}
    left = devices - sum(counts.values())
    for name, _x in sorted(exact, key=lambda e: e[1] - int(e[1]), reverse=True)[:left]:
        counts[name] += 1
    models = [name for name, n in counts.items() for _ in range(n)]
    _rng(f"{seed}/models").shuffle(models)
    return models


def _rng(seed: int | str) -> random.Random:
    return random.Random(seed)  # noqa: S311 - reproducible simulated behaviour, not secrets


def _public_ip(rng: random.Random) -> str:
    a, b, c = rng.choice(_FIRST_OCTETS), rng.randrange(256), rng.randrange(256)
    return f"{a}.{b}.{c}.{rng.randrange(1, 255)}"


def _host(network: str, rng: random.Random) -> str:
    net = ipaddress.ip_network(network)
    return str(net[rng.randrange(1, max(net.num_addresses - 1, 2))])


def _random_hash(rng: random.Random) -> str:
    return f"{rng.getrandbits(256):064x}"


class _SetState:
    """A set-valued metric of one device: fixed members and what is drawn per window."""

    def __init__(self, profile: SetProfile, *, model: str, rng: random.Random) -> None:
        self.fixed = fixed_members(model, profile)
        self._unions: dict[tuple[str, ...], frozenset[str]] = {}
        nets = {p: ipaddress.ip_network(p) for p in profile.pool if "/" in p}
        self.networks = {
            p: (int(n.network_address) + 1, n.num_addresses - 2) for p, n in nets.items()
        }
        self.pool = list(profile.pool) + [_public_ip(rng) for _ in range(profile.device_pool)]
        self.draw = profile.draw
        self.endpoint_ports = profile.endpoint_ports

    def members(self, rng: random.Random) -> frozenset[str]:
        n = rng.randint(*self.draw) if self.draw[1] else 0
        if not n:
            return self.fixed
        drawn = tuple(self._resolve(p, rng) for p in rng.sample(self.pool, n))
        if self.networks:  # drawn hosts of networks: a new set every time
            return self.fixed.union(drawn)
        union = self._unions.get(drawn)
        if union is None:  # few combinations: share them (bounded)
            union = self.fixed.union(drawn)
            if len(self._unions) < _MAX_SHARED_UNIONS:
                self._unions[drawn] = union
        return union

    def _resolve(self, member: str, rng: random.Random) -> str:
        net = self.networks.get(member)
        if net is None:
            return member
        return str(ipaddress.IPv4Address(net[0] + rng.randrange(max(net[1], 1))))


class _SetEffect:
    """An attack's change to a set-valued metric on one device, with its fixed draws."""

    def __init__(
        self, effect: Effect, *, onset_s: float, end_s: float, rng: random.Random,
        normal: frozenset[str],
    ) -> None:  # fmt: skip
        self.effect, self.onset_s, self.end_s = effect, onset_s, end_s
        if effect.op == "remove":  # the listed members, or some of the device's usual ones
            usual = sorted(normal)
            self.fixed = list(effect.values) or rng.sample(usual, min(effect.count, len(usual)))
        else:
            self.fixed = self._draw(rng)

    def _draw(self, rng: random.Random) -> list[str]:
        e = self.effect
        if e.generator == "public-ip":
            return [_public_ip(rng) for _ in range(e.count)]
        if e.generator == "hashes":
            return [_random_hash(rng) for _ in range(e.count)]
        if e.generator == "network":
            return [_host(rng.choice(e.values), rng) for _ in range(e.count)]
        if e.generator == "ports":
            return [str(p) for p in rng.sample(list(e.ports), min(e.count, len(e.ports)))]
        if e.generator == "file-hash":
            return [f"{path}={_random_hash(rng)}" for path in e.values]
        return list(e.values)

    def members(self, rng: random.Random) -> list[str]:
        fresh = self.effect.fresh and self.effect.op == "members"
        return self._draw(rng) if fresh else self.fixed


def _active(rel_end: Floats, interval: int, onset: float, end: float) -> npt.NDArray[np.bool_]:
    return (rel_end > onset) & (rel_end - interval < end)


def _on_phase(rel_end: Floats, interval: int, onset: float, e: Effect) -> npt.NDArray[np.bool_]:
    """Windows that overlap an on-phase of a periodic effect (always, without a period)."""
    if e.period_s <= 0:
        return np.ones(rel_end.shape, dtype=bool)
    offset = np.mod(rel_end - interval - onset, e.period_s)
    return (offset < e.duty * e.period_s) | (offset + interval > e.period_s)


def _apply_number(
    vals: Floats, e: Effect, rel_end: Floats, *, interval: int, span: tuple[float, float],
    scale: float,
) -> Floats:  # fmt: skip
    onset, end = span
    active = _active(rel_end, interval, onset, end)
    if e.op == "multiply":
        return np.where(active, vals * e.value, vals)
    if e.op == "set":
        return np.where(active, e.value * scale, vals)
    if e.op == "ramp":
        frac = np.clip((rel_end - onset) / max(end - onset, 1.0), 0.0, 1.0)
        return np.where(
            active, vals + (e.start_value + (e.value - e.start_value) * frac) * scale, vals
        )
    if e.op == "periodic":
        active &= _on_phase(rel_end, interval, onset, e)
    return np.where(active, vals + e.value * scale, vals)


@dataclass(frozen=True)
class _Block:
    device_rows: Floats  # (windows, device metrics)
    service_rows: Floats
    sets: list[dict[str, frozenset[str]]]  # every set metric, per window


class DeviceBehaviour:
    """A simulated device following a scenario: its device and service windows.

    Args:
        scenario: The scenario.
        device_index: The device's place in the fleet (decides its attacks, with the seed).
        device_id: Its id in the records.
        model: Its model (a model of the scenario; else the fleet plan's model is used).
        seed: Makes the behaviour reproducible.
        start: Aware start of simulated time (attack onsets count from it).
        devices: Fleet size the attacks were planned for (default: the scenario's ``devices``).
    """

    def __init__(
        self, scenario: Scenario, *, device_index: int, device_id: str, model: str, seed: int,
        start: datetime, devices: int | None = None,
    ) -> None:  # fmt: skip
        fleet = devices or max(scenario.devices, device_index + 1)
        plans = fleet_plan(scenario, devices=fleet, seed=seed)
        plan = plans[device_index] if 0 <= device_index < len(plans) else DevicePlan(model, ())
        profiles = {m.name: m for m in scenario.models}
        profile = profiles.get(model) or profiles[plan.model]
        self.device_id, self.model, self.interval_s = device_id, model, scenario.interval_s
        self._start_ts = start.timestamp()
        self._key = f"{seed}/{device_index}"
        rng = _rng(f"{self._key}/init")
        self._t = t = tables(profile)
        self._sets = {s.metric: _SetState(s, model=profile.name, rng=rng) for s in profile.sets}
        self._number_effects: list[tuple[int, Effect, tuple[float, float]]] = []
        self._set_effects: list[_SetEffect] = []
        for attack_index, onset_s, end_s in plan.attacks:
            for e in scenario.attacks[attack_index].effects:
                if e.metric in t.rows:
                    self._number_effects.append((t.rows[e.metric], e, (onset_s, end_s)))
                elif e.op in ("members", "remove"):
                    state = self._sets.get(e.metric)
                    normal = state.fixed if state else frozenset()
                    fx = _SetEffect(e, onset_s=onset_s, end_s=end_s, rng=rng, normal=normal)
                    self._set_effects.append(fx)
        self._cache: tuple[int, int, _Block] | None = None

    def record(self, end: datetime, interval_s: int) -> MetricsRecord:
        """The device's own view of the window ending at ``end`` (``source="device"``)."""
        block, w = self._locate(end, interval_s)
        sets = {m: v for m, v in block.sets[w].items() if not m.startswith("svc-")}
        numbers = dict(zip(self._t.device_names, block.device_rows[w].tolist(), strict=True))
        return MetricsRecord(self.device_id, self.model, "device", end, interval_s, numbers, sets)

    def service_record(self, end: datetime, interval_s: int) -> MetricsRecord | None:
        """The service's view of the device in the window (svc- metrics), or None if it has none."""
        if not self._t.has_service:
            return None
        block, w = self._locate(end, interval_s)
        sets = {m: v for m, v in block.sets[w].items() if m.startswith("svc-")}
        numbers = dict(zip(self._t.service_names, block.service_rows[w].tolist(), strict=True))
        return MetricsRecord(self.device_id, self.model, "service", end, interval_s, numbers, sets)

    def window(self, k: int, *, end: datetime) -> tuple[MetricsRecord, MetricsRecord | None]:
        """Both views of the ``k``-th window (0-based) of the scenario's interval (fast path)."""
        return self.record(end, self.interval_s), self.service_record(end, self.interval_s)

    def _locate(self, end: datetime, interval_s: int) -> tuple[_Block, int]:
        k = int((end.timestamp() - self._start_ts) // interval_s) - 1
        b, w = divmod(k, _BLOCK)
        cached = self._cache
        if cached is None or cached[0] != interval_s or cached[1] != b:
            cached = (interval_s, b, self._block(interval_s, b))
            self._cache = cached
        return cached[2], w

    def _block(self, interval: int, b: int) -> _Block:
        t = self._t
        k = np.arange(b * _BLOCK, (b + 1) * _BLOCK, dtype=np.float64)
        rel_end = (k + 1) * interval
        mids = self._start_ts + rel_end - interval / 2
        digest = hashlib.sha256(f"{self._key}/{interval}/{b}".encode()).digest()
        vals = self._noisy(
            np.random.default_rng(int.from_bytes(digest[:16], "big")), interval, mids
        )
        sets = self._window_sets(_rng(int.from_bytes(digest[16:], "big")), rel_end, interval)
        for row, metric in t.derived:
            vals[row] = [len(s.get(metric, ())) for s in sets]
        scale = interval / 300.0
        for row, e, span in self._number_effects:
            factor = scale if t.counter[row] else 1.0
            vals[row] = _apply_number(
                vals[row], e, rel_end, interval=interval, span=span, scale=factor
            )
        vals = np.clip(vals, t.low, t.high)
        vals = np.where(t.integer, np.round(vals), vals)
        return _Block(vals[t.device_idx].T.copy(), vals[t.service_idx].T.copy(), sets)

    def _noisy(self, rng: np.random.Generator, interval: int, mids: Floats) -> Floats:
        t = self._t
        hours = ((mids % 86_400) // 3600).astype(np.intp)
        scale = np.where(t.counter, interval / 300.0, 1.0)
        base = (t.level * scale)[:, None] * t.rhythm[:, hours]
        z = rng.standard_normal(base.shape)
        vals = np.where(t.lognormal, base * np.exp(t.sigma * z - t.sigma**2 / 2), base)
        vals = np.where(t.normal, base * (1 + t.sigma * z), vals)
        if t.poisson.any():
            vals[t.poisson] = rng.poisson(base[t.poisson])
        spikes = rng.random(base.shape) < t.spike_p
        vals = np.where(spikes, vals * t.spike_f, vals)
        tod = mids % 86_400
        for row, p in t.syncs:
            lo = p.sync_hour * 3600.0
            inside = (tod >= lo) & (tod < lo + p.sync_minutes * 60)
            vals[row] = np.where(inside, vals[row] * p.sync_factor, vals[row])
        return cast(Floats, vals)

    def _window_sets(
        self, rng: random.Random, rel_end: Floats, interval: int
    ) -> list[dict[str, frozenset[str]]]:
        actives = [
            (fx, _active(rel_end, interval, fx.onset_s, fx.end_s)
             & _on_phase(rel_end, interval, fx.onset_s, fx.effect))
            for fx in self._set_effects
        ]  # fmt: skip
        out = []
        for w in range(len(rel_end)):
            sets = {metric: state.members(rng) for metric, state in self._sets.items()}
            self._endpoints(sets, sets.get("destination-ip-addresses", frozenset()), self._ports())
            for fx, active in actives:
                if active[w]:
                    _add_members(sets, fx, fx.members(rng))
            out.append(sets)
        return out

    def _ports(self) -> tuple[int, ...]:
        dest = self._sets.get("destination-ip-addresses")
        return dest.endpoint_ports if dest and "remote-endpoints" not in self._sets else ()

    @staticmethod
    def _endpoints(
        sets: dict[str, frozenset[str]], ips: frozenset[str], ports: tuple[int, ...]
    ) -> None:
        if ports and ips:
            new = {f"{ip}:{ports[zlib.crc32(ip.encode()) % len(ports)]}" for ip in ips}
            sets["remote-endpoints"] = sets.get("remote-endpoints", frozenset()) | new


def _add_members(sets: dict[str, frozenset[str]], fx: _SetEffect, members: list[str]) -> None:
    e = fx.effect
    current = sets.get(e.metric, frozenset())
    if e.op == "remove":
        sets[e.metric] = current.difference(members)
        return
    if e.generator == "file-hash":
        paths = {m.split("=", 1)[0] for m in members}
        current = frozenset(m for m in current if m.split("=", 1)[0] not in paths)
    sets[e.metric] = current.union(members)
    if e.metric == "destination-ip-addresses" and e.ports:
        DeviceBehaviour._endpoints(sets, frozenset(members), e.ports)
