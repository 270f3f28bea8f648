"""Set learning: members known per device and cohort, new ones raised once, beacons."""

from __future__ import annotations

import sys
from typing import Any, Final

from trustfleet.monitoring import _checks
from trustfleet.monitoring._config import DetectorConfig
from trustfleet.monitoring._state import Cohort, Device
from trustfleet.monitoring.records import Finding, MetricsRecord, Severity

__all__ = ["SETS", "SetLearning"]

_PREFIXES: Final = "destination-networks"
SETS: Final[tuple[tuple[str, str, Severity], ...]] = (
    ("destination-ip-addresses", "monitor.destination.new", "medium"),
    ("remote-ports", "monitor.destination.new", "medium"),
    ("listening-tcp-ports", "monitor.port.new", "high"),
    ("listening-udp-ports", "monitor.port.new", "high"),
    ("executables", "monitor.executable.new", "high"),
)
"""The set metrics learned from device windows: (name, kind when new, severity)."""


def _network(address: str) -> str:
    """The /24 (IPv4) or /64 (IPv6, written in full groups) an address belongs to."""
    if ":" in address:
        return ":".join(address.split(":")[:4])
    return address.rpartition(".")[0]


class SetLearning:
    """The set-learning half of the pipeline (a mixin of ``FleetDetector``)."""

    config: DetectorConfig

    def _learn_or_new(
        self, name: str, members: frozenset[str], dev: Device, cohort: Cohort, learning: bool
    ) -> list[str]:
        known = dev.known.get(name)
        if known is None:
            known = dev.known[name] = set()
        if learning:
            fresh = members - known
            if fresh:
                cap = self.config.max_members
                counts = cohort.members.setdefault(name, {})
                for member in fresh:
                    m = sys.intern(member)  # one copy for the cohort: devices hold references
                    if len(known) < cap:
                        known.add(m)
                    if m in counts or len(counts) < cap * 16:
                        counts[m] = counts.get(m, 0) + 1
            return []
        flagged = dev.flagged.setdefault(name, set())
        return _checks.novelty(
            members,
            known,
            flagged,
            cohort.members.get(name, {}),
            cohort_min=self.config.cohort_known_devices,
        )

    def _sets(
        self,
        rec: MetricsRecord,
        sets: Any,
        ports: frozenset[str],
        dev: Device,
        cohort: Cohort,
        *,
        learning: bool,
    ) -> dict[str, list[str]]:
        new: dict[str, list[str]] = {}
        for name, _, _ in SETS:
            members = ports if name == "remote-ports" else sets.get(name)
            if members is None:
                continue
            found = self._learn_or_new(name, members, dev, cohort, learning)
            if name == "destination-ip-addresses" and self.config.known_prefixes:
                found = self._prefix_filter(members, found, dev, cohort, learning=learning)
            if found:
                new[name] = found
        return new

    def _prefix_filter(
        self,
        members: frozenset[str],
        found: list[str],
        dev: Device,
        cohort: Cohort,
        *,
        learning: bool,
    ) -> list[str]:
        """Learn destination networks (/24, /64) while learning; later, a new address in a
        network the device or its cohort used is not new (CDN and pool churn)."""
        if learning:
            nets = frozenset(_network(m) for m in members)
            self._learn_or_new(_PREFIXES, nets, dev, cohort, learning)
            return found
        known = dev.known.get(_PREFIXES, set())
        counts = cohort.members.get(_PREFIXES, {})
        return [m for m in found if (n := _network(m)) not in known and n not in counts]

    def _novelty_findings(
        self, rec: MetricsRecord, dev: Device, new: dict[str, list[str]], out: list[Finding]
    ) -> None:
        dests = new.get("destination-ip-addresses")
        if dests and len(dests) == 1:  # a lone one counts once it comes back
            seen = dev.novel.get(dests[0], ())
            if len(seen) < self.config.new_destination_windows:
                del new["destination-ip-addresses"]
        if "destination-ip-addresses" not in new:
            new.pop("remote-ports", None)  # remote ports are evidence of a destination finding
        by_kind: dict[str, dict[str, list[str]]] = {}
        severity: dict[str, Severity] = {}
        cap = self.config.max_members
        for name, kind, sev in SETS:
            if name in new:
                by_kind.setdefault(kind, {})[name] = new[name]
                severity[kind] = sev
                flagged = dev.flagged[name]
                if len(flagged) < cap:
                    flagged.update(new[name])
        if len(new.get("destination-ip-addresses", ())) >= self.config.scan_destinations:
            by_kind["monitor.destination.scan"] = by_kind.pop("monitor.destination.new")
            severity["monitor.destination.scan"] = "high"
        for kind, metrics in by_kind.items():
            text = "; ".join(f"{len(v)} new {k} ({', '.join(v[:3])})" for k, v in metrics.items())
            evidence = {
                "metrics": {k: v[:20] for k, v in metrics.items()},
                "counts": {k: len(v) for k, v in metrics.items()},
                "window_s": rec.interval_s,
            }
            out.append(
                Finding(rec.device_id, kind, severity[kind], "baseline", rec.end, text, evidence)
            )

    def _beacons(
        self, rec: MetricsRecord, t: float, dev: Device, sets: Any, out: list[Finding]
    ) -> None:
        dests = sets.get("destination-ip-addresses")
        if not dests:
            return
        found = _checks.beacon_check(
            dests,
            dev.known.get("destination-ip-addresses", set()),
            dev.novel,
            t,
            windows=self.config.beacon_windows,
            max_cv=self.config.beacon_max_cv,
            max_tracked=32,
        )
        for dest, period, count in found:
            if dest in dev.beacons:
                continue
            if len(dev.beacons) < self.config.max_members:
                dev.beacons.add(dest)
            out.append(
                Finding(
                    rec.device_id,
                    "monitor.beacon",
                    "high",
                    "baseline",
                    rec.end,
                    f"regular connections to new destination {dest} every ~{period:.0f} s "
                    f"({count} windows)",
                    {
                        "metrics": {
                            "destination": dest,
                            "period_s": round(period, 1),
                            "windows": count,
                        },
                        "window_s": rec.interval_s,
                    },
                )
            )
