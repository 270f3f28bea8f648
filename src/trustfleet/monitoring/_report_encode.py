"""Building a metrics report's document (see :mod:`trustfleet.monitoring.report`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from trustfleet.monitoring._report_names import CUSTOM_NUMBERS, NET, PORTS
from trustfleet.monitoring.records import MetricsRecord

__all__ = ["encode_custom", "encode_metrics", "iso"]


def iso(end: datetime) -> str:
    return end.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _num(value: float) -> int | float:
    return int(value) if float(value).is_integer() else float(value)


def encode_metrics(record: MetricsRecord) -> dict[str, Any]:
    numbers, sets = record.numbers, record.sets
    metrics: dict[str, Any] = {}
    for section, (set_name, total_name) in PORTS.items():
        body: dict[str, Any] = {}
        if set_name in sets:
            body["ports"] = [{"port": int(p)} for p in sorted(sets[set_name], key=int)]
        if total_name in numbers:
            body["total"] = _num(numbers[total_name])
        if body:
            metrics[section] = body
    net = {key: _num(numbers[name]) for key, name in NET.items() if name in numbers}
    if net:
        metrics["network_stats"] = net
    est: dict[str, Any] = {}
    if "remote-endpoints" in sets:
        est["connections"] = [{"remote_addr": ep} for ep in sorted(sets["remote-endpoints"])]
    if "num-established-tcp-connections" in numbers:
        est["total"] = _num(numbers["num-established-tcp-connections"])
    if est:
        metrics["tcp_connections"] = {"established_connections": est}
    return metrics


def encode_custom(record: MetricsRecord) -> dict[str, Any]:
    custom: dict[str, Any] = {
        name: [{"number": _num(record.numbers[name])}]
        for name in CUSTOM_NUMBERS
        if name in record.numbers
    }
    if "destination-ip-addresses" in record.sets:
        ips = sorted(record.sets["destination-ip-addresses"])
        custom["destination-ip-addresses"] = [{"ip_list": ips}]
    for name in ("executables", "watched-files"):
        if name in record.sets:
            custom[name] = [{"string_list": sorted(record.sets[name])}]
    return custom
