"""A scenario file (TOML) read into frozen values, every key checked (docs/monitoring.md).

Errors are ``InvalidInput(code="monitor.scenario.invalid")`` naming the file and the key
(``attacks[2].effects[0].op``) and what is wrong with it.
"""

from __future__ import annotations

import ipaddress
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, cast

from trustfleet.errors import InvalidInput
from trustfleet.monitoring._toml_table import MAX_MEMBERS, SCENARIO_CODE, SCENARIO_HINT, Table
from trustfleet.monitoring.records import DEVICE_NUMBERS, DEVICE_SETS, SERVICE_NUMBERS, SERVICE_SETS

MAX_SCENARIO_BYTES: Final = 256 * 1024
MAX_DEVICES: Final = 100_000
MAX_HOURS: Final = 24 * 366
MAX_MODELS: Final = 32
MAX_ATTACKS: Final = 64
MAX_EFFECTS: Final = 16
NUMBER_OPS: Final = ("add", "multiply", "set", "ramp", "periodic")
SET_OPS: Final = ("members", "remove")
GENERATORS: Final = ("public-ip", "network", "ports", "hashes", "list", "file-hash")
NOISES: Final = ("lognormal", "poisson", "normal", "none")
_COUNTER_WORDS: Final = ("bytes", "packets", "failed-logins", "svc-")


@dataclass(frozen=True)
class NumberProfile:
    """How one numeric metric behaves on a normal device of a model."""

    metric: str
    level: float  # mean per window at rhythm 1 (counters: per 300 s, scaled to the window)
    rhythm: tuple[float, ...]  # 24 factors by hour of day (UTC)
    noise: str
    sigma: float
    counter: bool
    spike_probability: float
    spike_factor: float
    sync_hour: int  # -1: no nightly sync
    sync_minutes: float
    sync_factor: float
    minimum: float
    maximum: float
    integer: bool


@dataclass(frozen=True)
class SetProfile:
    """How one set-valued metric behaves: fixed members, plus some drawn from a pool."""

    metric: str
    members: tuple[str, ...]
    hashes: int  # model-wide executable hashes (always present)
    files: tuple[str, ...]  # watched paths ("path=sha256", model-wide)
    pool: tuple[str, ...]  # drawn from per window; "a.b.c.0/24" draws a host of the network
    device_pool: int  # per-device random public addresses added to the pool
    draw: tuple[int, int]
    endpoint_ports: tuple[int, ...]  # destinations also show as remote-endpoints "ip:port"


@dataclass(frozen=True)
class ModelProfile:
    """The normal behaviour of one device model, and its share of the fleet."""

    name: str
    share: float
    numbers: tuple[NumberProfile, ...]
    sets: tuple[SetProfile, ...]


@dataclass(frozen=True)
class Effect:
    """One change an attack makes to one metric."""

    metric: str
    op: str
    value: float
    start_value: float
    period_s: float  # periodic / gated members; 0: always on
    duty: float
    generator: str
    count: int
    fresh: bool
    values: tuple[str, ...]
    ports: tuple[int, ...]


@dataclass(frozen=True)
class Attack:
    """An attack class: which devices, when, and what changes."""

    attack_class: str
    models: tuple[str, ...]  # empty: any model
    devices: int
    fraction: float
    onset_h: tuple[float, float]
    duration_h: float
    effects: tuple[Effect, ...]


@dataclass(frozen=True)
class Scenario:
    """A whole scenario: models with their normal profiles, attacks, and run defaults."""

    name: str
    description: str
    interval_s: int
    devices: int
    hours: float
    learning_hours: float
    models: tuple[ModelProfile, ...]
    attacks: tuple[Attack, ...]

    @property
    def attack_classes(self) -> tuple[str, ...]:
        """The attack classes, in file order, once each."""
        return tuple(dict.fromkeys(a.attack_class for a in self.attacks))


def parse_toml(text: str, *, source: str) -> dict[str, Any]:
    """The TOML document of a scenario, bounded in size."""
    if len(text.encode()) > MAX_SCENARIO_BYTES:
        raise InvalidInput(
            f"{source}: the scenario is larger than {MAX_SCENARIO_BYTES} bytes", hint=SCENARIO_HINT,
            code=SCENARIO_CODE,
        )  # fmt: skip
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInput(
            f"{source}: not valid TOML ({exc})", hint=SCENARIO_HINT, code=SCENARIO_CODE
        ) from exc


def read_models(top: Table) -> dict[str, ModelProfile]:
    """The ``[models.NAME]`` tables."""
    models = top.table("models")
    if len(models.data) > MAX_MODELS:
        raise models.error(f"has more than {MAX_MODELS} models")
    out: dict[str, ModelProfile] = {}
    for name in models.data:
        if not _is_name(name):
            raise models.error("is not a model name (a-z, 0-9, '-', '_', '.')", name)
        out[name] = _model(models.table(name), name)
    models.done()
    return out


def _model(t: Table, name: str) -> ModelProfile:
    share = t.number("share", 1.0, low=0.0, high=1e6)
    nums, sets = t.table("numbers"), t.table("sets")
    numbers = []
    for metric in nums.data:
        if metric not in DEVICE_NUMBERS + SERVICE_NUMBERS:
            raise nums.error("is not a numeric metric (see records.DEVICE_NUMBERS)", metric)
        numbers.append(_number(nums.table(metric), metric))
    set_profiles = []
    for metric in sets.data:
        if metric not in DEVICE_SETS + SERVICE_SETS:
            raise sets.error("is not a set-valued metric (see records.DEVICE_SETS)", metric)
        set_profiles.append(_set(sets.table(metric), metric))
    nums.done()
    sets.done()
    t.done()
    return ModelProfile(name=name, share=share, numbers=tuple(numbers), sets=tuple(set_profiles))


def _number(t: Table, metric: str) -> NumberProfile:
    noise = t.get("noise", str, "lognormal")
    if noise not in NOISES:
        raise t.error(f"must be one of {', '.join(NOISES)}", "noise")
    counter = t.get("counter", bool, any(w in metric for w in _COUNTER_WORDS))
    profile = NumberProfile(
        metric=metric,
        level=t.number("level", 0.0, low=0.0, high=1e12),
        rhythm=_rhythm(t),
        noise=noise,
        sigma=t.number("sigma", 0.2, low=0.0, high=5.0),
        counter=counter,
        spike_probability=t.number("spike_probability", 0.0, low=0.0, high=1.0),
        spike_factor=t.number("spike_factor", 1.0, low=0.0, high=1e6),
        sync_hour=t.integer("sync_hour", -1, low=-1, high=23),
        sync_minutes=t.number("sync_minutes", 30.0, low=1.0, high=1440.0),
        sync_factor=t.number("sync_factor", 1.0, low=0.0, high=1e6),
        minimum=t.number("min", 0.0, low=-1e12, high=1e12),
        maximum=t.number("max", 1e15, low=-1e12, high=1e15),
        integer=t.get("integer", bool, noise == "poisson" or counter),
    )
    t.done()
    return profile


def _rhythm(t: Table) -> tuple[float, ...]:
    raw: object = t.get("rhythm", (str, list), cast(object, "flat"))
    if isinstance(raw, list):
        if len(raw) != 24 or not all(isinstance(x, (int, float)) and x >= 0 for x in raw):
            raise t.error("must be 'flat', 'daily' or 24 factors >= 0 (one per hour)", "rhythm")
        return tuple(float(x) for x in raw)
    peak = t.number("peak_hour", 14.0, low=0.0, high=23.99)
    trough = t.number("trough", 0.3, low=0.0, high=1.0)
    if raw == "flat":
        return (1.0,) * 24
    if raw != "daily":
        raise t.error("must be 'flat', 'daily' or 24 factors >= 0 (one per hour)", "rhythm")
    return tuple(
        trough + (1 - trough) * (1 + math.cos(2 * math.pi * (h + 0.5 - peak) / 24)) / 2
        for h in range(24)
    )


def _set(t: Table, metric: str) -> SetProfile:
    draw = t.get("draw", (int, list), 0)
    pair = [draw, draw] if isinstance(draw, int) else draw
    if len(pair) != 2 or not all(isinstance(x, int) and 0 <= x <= MAX_MEMBERS for x in pair):
        raise t.error(f"must be a count or [low, high] within 0..{MAX_MEMBERS}", "draw")
    profile = SetProfile(
        metric=metric,
        members=t.strings("members"),
        hashes=t.integer("hashes", 0, low=0, high=MAX_MEMBERS),
        files=t.strings("files", check=lambda p: p.startswith("/") and "=" not in p),
        pool=t.strings("pool", check=_pool_member),
        device_pool=t.integer("device_pool", 0, low=0, high=MAX_MEMBERS),
        draw=(min(pair), max(pair)),
        endpoint_ports=t.ports("endpoint_ports"),
    )
    t.done()
    if profile.draw[1] > len(profile.pool) + profile.device_pool:
        raise t.error("draws more members than the pool has", "draw")
    return profile


def _is_network(text: str) -> bool:
    return "/" in text and _pool_member(text)


def _pool_member(text: str) -> bool:
    if "/" not in text:
        return True
    try:
        return ipaddress.ip_network(text, strict=True).num_addresses >= 4
    except ValueError:
        return False


def read_attack(t: Table, models: Mapping[str, ModelProfile]) -> Attack:
    """One ``[[attacks]]`` table."""
    klass = t.get("class", str, "")
    if not _is_name(klass):
        raise t.error("must name the attack class (a-z, 0-9, '-', '_', '.')", "class")
    wanted = t.strings("models")
    for model in wanted:
        if model not in models:
            raise t.error(f"names an unknown model {model!r}", "models")
    onset = t.get("onset_h", (int, float, list), 24.0)
    onset_pair = [onset, onset] if isinstance(onset, (int, float)) else onset
    if len(onset_pair) != 2 or not all(
        isinstance(x, (int, float)) and not isinstance(x, bool) and 0 <= x <= MAX_HOURS
        for x in onset_pair
    ):
        raise t.error(f"must be hours or [from, to] within 0..{MAX_HOURS}", "onset_h")
    attack = Attack(
        attack_class=klass,
        models=wanted,
        devices=t.integer("devices", 0, low=0, high=MAX_DEVICES),
        fraction=t.number("fraction", 0.0, low=0.0, high=1.0),
        onset_h=(float(min(onset_pair)), float(max(onset_pair))),
        duration_h=t.number("duration_h", 4.0, low=0.01, high=MAX_HOURS),
        effects=tuple(_effect(e) for e in t.tables("effects", most=MAX_EFFECTS)),
    )
    t.done()
    _check_metrics_reported(t, attack, models)
    if (attack.devices > 0) == (attack.fraction > 0):
        raise t.error("must give exactly one of devices (a count) or fraction (0..1)", "devices")
    if not attack.effects:
        raise t.error("must list at least one effect", "effects")
    return attack


_DERIVED_FROM: Final = {
    "num-listening-tcp-ports": "listening-tcp-ports",
    "num-listening-udp-ports": "listening-udp-ports",
}


def _check_metrics_reported(t: Table, attack: Attack, models: Mapping[str, ModelProfile]) -> None:
    """A numeric effect must change a metric every targeted model reports."""
    for i, e in enumerate(attack.effects):
        if e.op in SET_OPS:
            continue
        for name in attack.models or tuple(models):
            m = models[name]
            reported = {p.metric for p in m.numbers}
            reported |= {n for n, s in _DERIVED_FROM.items() if s in {p.metric for p in m.sets}}
            if e.metric not in reported:
                problem = f"is {e.metric}, which model {name} does not report (no profile)"
                raise t.error(problem, f"effects[{i}].metric")


def _effect(t: Table) -> Effect:
    metric = t.get("metric", str, "")
    numeric = metric in DEVICE_NUMBERS + SERVICE_NUMBERS
    if not numeric and metric not in DEVICE_SETS + SERVICE_SETS:
        raise t.error("must name a metric (see records.DEVICE_NUMBERS, DEVICE_SETS)", "metric")
    op = t.get("op", str, "")
    if op not in (NUMBER_OPS if numeric else SET_OPS):
        ops = ", ".join(NUMBER_OPS if numeric else SET_OPS)
        raise t.error(f"must be one of {ops} for {metric}", "op")
    effect = Effect(
        metric=metric,
        op=op,
        value=t.number("value", 0.0, low=-1e12, high=1e12),
        start_value=t.number("start_value", 0.0, low=-1e12, high=1e12),
        period_s=t.number("period_s", 0.0, low=0.0, high=86_400.0 * 30),
        duty=t.number("duty", 0.1, low=0.0, high=1.0),
        generator=t.get("generator", str, "list" if not numeric else ""),
        count=t.integer("count", 1, low=0, high=MAX_MEMBERS),
        fresh=t.get("fresh", bool, False),
        values=t.strings("values"),
        ports=t.ports("ports"),
    )
    t.done()
    _check_effect(t, effect, numeric=numeric)
    return effect


def _check_effect(t: Table, e: Effect, *, numeric: bool) -> None:
    if e.op == "periodic" and e.period_s <= 0:
        raise t.error("must be > 0 for a periodic effect", "period_s")
    if numeric:
        return
    if e.op == "remove":
        return
    if e.generator not in GENERATORS:
        raise t.error(f"must be one of {', '.join(GENERATORS)}", "generator")
    if e.generator == "network" and not (e.values and all(_is_network(v) for v in e.values)):
        raise t.error("must list networks (e.g. 10.0.0.0/24) for generator network", "values")
    if e.generator in ("list", "file-hash") and not e.values:
        raise t.error(f"must list the members (or paths) for generator {e.generator}", "values")
    if e.generator == "ports" and not e.ports:
        raise t.error("must list the ports for generator ports", "ports")
    if e.generator == "file-hash" and e.metric != "watched-files":
        raise t.error("file-hash changes watched-files only", "generator")


def _is_name(text: str) -> bool:
    ok = set("abcdefghijklmnopqrstuvwxyz0123456789-_.")
    return 0 < len(text) <= 64 and text[0].isalnum() and set(text) <= ok
