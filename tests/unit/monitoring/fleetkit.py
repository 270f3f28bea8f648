"""A small synthetic fleet for the detection unit tests (H2's scenarios are the real harness).

Normal devices follow a daily rhythm with log-normal noise, talk to a few destinations of their
model (and now and then to one of a pool), listen on fixed ports and run fixed executables.
An attack changes one device's windows from ``onset_h`` on.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from trustfleet.monitoring import MetricsRecord

START = datetime(2026, 1, 5, tzinfo=UTC)
INTERVAL_S = 300


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


EXES = frozenset(sha(f"exe{i}") for i in range(6))
FILES = frozenset({f"/etc/passwd={sha('passwd')}", f"/usr/bin/agent={sha('agent')}"})
POOL = [f"198.51.100.{i}" for i in range(1, 21)]

Attack = Callable[[dict[str, float], dict[str, frozenset[str]], int], None]


@dataclass(frozen=True)
class Device:
    device_id: str
    model: str
    level: float
    dests: tuple[str, ...]


def _device(i: int, rng: random.Random) -> Device:
    return Device(
        device_id=f"dev-{i:04d}",
        model="cam-v1" if i % 2 == 0 else "gw-v2",
        level=math.exp(rng.gauss(0, 0.5)),
        dests=("203.0.113.10", "203.0.113.11", POOL[i % len(POOL)]),
    )


def _normal(d: Device, end: datetime, rng: random.Random) -> MetricsRecord:
    hour = end.hour + end.minute / 60
    rhythm = 1 + 0.6 * math.sin(2 * math.pi * (hour - 8) / 24)
    bytes_out = 20_000 * d.level * rhythm * math.exp(rng.gauss(0, 0.25))
    bytes_in = 30_000 * d.level * rhythm * math.exp(rng.gauss(0, 0.25))
    dests = set(d.dests[:2])
    if rng.random() < 0.3:
        dests.add(d.dests[2])
    if rng.random() < 0.02:
        dests.add(rng.choice(POOL))
    endpoints = {f"{a}:443" for a in dests}
    numbers = {
        "all-bytes-out": bytes_out,
        "all-bytes-in": bytes_in,
        "all-packets-out": bytes_out / 500,
        "all-packets-in": bytes_in / 700,
        "num-listening-tcp-ports": 2,
        "num-listening-udp-ports": 0,
        "num-established-tcp-connections": len(endpoints),
        "num-processes": 60 + rng.randint(-3, 3),
        "cpu-percent": 15 * rhythm * math.exp(rng.gauss(0, 0.2)),
        "memory-percent": 40 + rng.gauss(0, 2),
        "failed-logins": float(rng.random() < 0.01),
    }
    sets = {
        "listening-tcp-ports": frozenset({"22", "8883"}),
        "listening-udp-ports": frozenset(),
        "destination-ip-addresses": frozenset(dests),
        "remote-endpoints": frozenset(endpoints),
        "executables": EXES,
        "watched-files": FILES,
    }
    return MetricsRecord(d.device_id, d.model, "device", end, INTERVAL_S, numbers, sets)


def _service(d: Device, end: datetime, rng: random.Random) -> MetricsRecord:
    numbers = {
        "svc-connect-attempts": float(rng.random() < 0.02),
        "svc-connect-refusals": 0.0,
        "svc-disconnects": float(rng.random() < 0.02),
        "svc-authz-failures": 0.0,
        "svc-messages-in": 60.0 + rng.randint(-5, 5),
        "svc-bytes-in": 6000.0 + rng.randint(-500, 500),
        "svc-est-refusals": 0.0,
        "svc-attestation-findings": 0.0,
        "svc-missed-challenges": 0.0,
    }
    sets = {"svc-source-addresses": frozenset({"192.0.2.1"})}
    return MetricsRecord(d.device_id, d.model, "service", end, INTERVAL_S, numbers, sets)


def fleet(
    *,
    devices: int,
    hours: float,
    seed: int = 1,
    attacks: dict[int, tuple[Attack, float, float]] | None = None,
) -> Iterator[MetricsRecord]:
    """Time-ordered records; ``attacks`` maps a device index to (attack, onset h, duration h)."""
    rng = random.Random(seed)
    fleet_devices = [_device(i, rng) for i in range(devices)]
    attacks = attacks or {}
    steps = int(hours * 3600 / INTERVAL_S)
    for step in range(1, steps + 1):
        end = START + timedelta(seconds=step * INTERVAL_S)
        for i, d in enumerate(fleet_devices):
            rec = _normal(d, end, rng)
            svc = _service(d, end, rng)
            if i in attacks:
                attack, onset_h, duration_h = attacks[i]
                since = step * INTERVAL_S / 3600 - onset_h
                if 0 <= since < duration_h:
                    rec, svc = _apply(attack, rec, svc, step)
            yield rec
            yield svc


def _apply(
    attack: Attack, rec: MetricsRecord, svc: MetricsRecord, step: int
) -> tuple[MetricsRecord, MetricsRecord]:
    numbers = dict(rec.numbers) | dict(svc.numbers)
    sets = dict(rec.sets) | dict(svc.sets)
    attack(numbers, sets, step)
    dev = {k: v for k, v in numbers.items() if not k.startswith("svc-")}
    svc_n = {k: v for k, v in numbers.items() if k.startswith("svc-")}
    dev_s = {k: v for k, v in sets.items() if not k.startswith("svc-")}
    svc_s = {k: v for k, v in sets.items() if k.startswith("svc-")}
    return (
        MetricsRecord(rec.device_id, rec.model, "device", rec.end, rec.interval_s, dev, dev_s),
        MetricsRecord(svc.device_id, svc.model, "service", svc.end, svc.interval_s, svc_n, svc_s),
    )


def exfiltration(n: dict[str, float], s: dict[str, frozenset[str]], step: int) -> None:
    n["all-bytes-out"] *= 40
    n["all-packets-out"] *= 40
    s["destination-ip-addresses"] |= {"192.0.2.66"}
    s["remote-endpoints"] |= {"192.0.2.66:443"}


def scanning(n: dict[str, float], s: dict[str, frozenset[str]], step: int) -> None:
    targets = {f"10.{step % 200}.{i}.{(i * 7) % 250}" for i in range(30)}
    s["destination-ip-addresses"] |= targets
    s["remote-endpoints"] |= {f"{t}:23" for t in targets}
    n["all-packets-out"] *= 3


def backdoor(n: dict[str, float], s: dict[str, frozenset[str]], step: int) -> None:
    s["listening-tcp-ports"] |= {"4444"}
    s["executables"] |= {sha("backdoor")}


def tamper(n: dict[str, float], s: dict[str, frozenset[str]], step: int) -> None:
    s["watched-files"] = frozenset({f"/etc/passwd={sha('evil')}", f"/usr/bin/agent={sha('agent')}"})


def flood(n: dict[str, float], s: dict[str, frozenset[str]], step: int) -> None:
    n["svc-messages-in"] *= 30
    n["svc-bytes-in"] *= 30


def mining(n: dict[str, float], s: dict[str, frozenset[str]], step: int) -> None:
    n["cpu-percent"] = 97.0
    n["num-processes"] += 2
