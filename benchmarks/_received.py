"""What the fleet service of benchmarks/fleet.py received, on either broker: counts, duplicates
by (topic, seq), latency from each payload's ``ts``; shared by _mqttload.py and _amqpload.py."""

from __future__ import annotations

import contextlib
import json
from datetime import datetime
from pathlib import Path
from typing import Any


class Received:
    """Messages received by one service process (not thread-safe: hold a lock if shared)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget everything received."""
        self.received = 0
        self.bad = 0
        self.dups = 0
        self.seen: set[tuple[str, int]] = set()
        self.latency_ms: list[float] = []
        self.t_last_new = 0.0  # wall clock of the last message not seen before

    def take(self, topic: str, payload: bytes, now: float) -> None:
        """Count one message (``now``: when it arrived, ``time.time()``)."""
        self.received += 1
        try:
            msg = json.loads(payload)
            key = (topic, int(msg["seq"]))
            sent = datetime.fromisoformat(msg["ts"]).timestamp()
        except (ValueError, KeyError, TypeError):
            self.bad += 1
            return
        if key in self.seen:
            self.dups += 1
        else:
            self.seen.add(key)
            self.latency_ms.append((now - sent) * 1000.0)
            self.t_last_new = now

    def stats(self) -> dict[str, Any]:
        lat = sorted(self.latency_ms)
        return {
            "received": self.received,
            "unique": len(self.seen),
            "t_last_new": self.t_last_new,
            "dups": self.dups,
            "bad": self.bad,
            "p50_ms": pct(lat, 50),
            "p99_ms": pct(lat, 99),
            "max_ms": lat[-1] if lat else None,
        }


def pct(sorted_values: list[float], percent: float) -> float | None:
    """The ``percent`` percentile of sorted values (nearest rank), rounded to µs."""
    if not sorted_values:
        return None
    k = min(len(sorted_values) - 1, max(0, round(percent / 100 * len(sorted_values) + 0.5) - 1))
    return round(sorted_values[k], 3)


def rss_kib() -> int:
    """This process's resident memory (KiB)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0
