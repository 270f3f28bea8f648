"""Metrics reports through the ingest worker into a real store (SQLite and PostgreSQL).

The worker's processing runs as in ``server run`` (decode against the inventory's model, one
transaction per batch, the per-message boundary, ``ingest.rejected``); only MQTT is absent.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from support.ingestworker import worker_kit
from trustfleet.monitoring import MetricsRecord
from trustfleet.monitoring.report import encode_report

pytestmark = pytest.mark.integration

GOOD, OTHER = "dev-good0001", "dev-good0002"


def _report(device_id: str, end: datetime, **numbers: float) -> tuple[str, bytes]:
    record = MetricsRecord(
        device_id, "ignored", "device", end, 60,
        numbers={"all-bytes-out": 10.0, **numbers},
        sets={"destination-ip-addresses": frozenset({"192.0.2.10"})},
    )  # fmt: skip
    return f"tf/v1/d/{device_id}/metrics", encode_report(record, report_id=1)


def _windows(kit: object) -> list[tuple[int, MetricsRecord]]:
    with kit.uow.begin(read_only=True) as tx:  # type: ignore[attr-defined]  # a WorkerKit
        return tx.monitor_metrics.after(0, limit=1000)


def test_reports_are_stored_once_with_the_inventory_s_model(db_url: str, tmp_path: Path) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    with worker_kit(tmp_path, db_url, now=lambda: now) as kit:
        first = _report(GOOD, now)
        kit.feed(first, _report(OTHER, now), first)  # a duplicate in the batch
        kit.feed(first)  # a QoS 1 redelivery later
        kit.feed(_report(GOOD, now + timedelta(seconds=60)))
        windows = _windows(kit)
        assert [(r.device_id, r.end) for _, r in windows] == [
            (GOOD, now), (OTHER, now), (GOOD, now + timedelta(seconds=60)),
        ]  # fmt: skip
        assert {r.model for _, r in windows} == {"m"}  # the inventory's, not the report's
        assert windows[0][1].sets["destination-ip-addresses"] == {"192.0.2.10"}
        assert kit.worker.counters.by_code == {}


_HOSTILE = [
    ("not-json", b"{"),
    ("unknown-field", b"REPORT"),
    ("port-zero", json.dumps({"header": {"report_id": 1, "version": "1.0"}, "ts": "{ts}",
                              "interval_s": 60, "metrics": {"listening_tcp_ports": {
                                  "ports": [{"port": 0}]}}}).encode()),
    ("oversized", b"{" + b" " * 20_000 + b"}"),
]  # fmt: skip


def test_hostile_reports_are_rejected_and_counted(db_url: str, tmp_path: Path) -> None:
    clock = [datetime.now(UTC).replace(microsecond=0)]
    start = clock[0]
    with worker_kit(tmp_path, db_url, now=lambda: clock[0], rejected_event_window_s=300) as kit:
        stale = _report(GOOD, start - timedelta(days=30))
        sideways = _report(GOOD, start)[1].replace(b'"bytes_out"', b'"bytes_sideways"')
        ts = start.isoformat().encode()
        payloads = [sideways if p == b"REPORT" else p.replace(b"{ts}", ts) for _, p in _HOSTILE]
        hostile = [(f"tf/v1/d/{GOOD}/metrics", p) for p in payloads]
        unknown = _report("dev-unknown1", start)
        kit.feed(*hostile, stale, unknown, _report(OTHER, start))
        assert [r.device_id for _, r in _windows(kit)] == [OTHER]  # the good one is stored
        codes = kit.worker.counters.by_code
        assert codes == {
            "monitor.report.json": 1, "monitor.report.field": 1, "monitor.report.port": 1,
            "monitor.report.size": 1, "monitor.report.ts": 1, "monitor.report.device": 1,
        }, codes  # fmt: skip
        clock[0] = start + timedelta(seconds=300)
        kit.worker._write_rejections(flush=False)  # what the worker's loop does each turn
        events = {e.subject: e.details for e in kit.events("ingest.rejected")}
        assert events[f"device:{GOOD}"]["count"] == 5


def test_metrics_retention_drops_old_windows(db_url: str, tmp_path: Path) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    clock = [now - timedelta(days=10)]
    with worker_kit(tmp_path, db_url, now=lambda: clock[0]) as kit:
        kit.feed(_report(GOOD, clock[0]))
        clock[0] = now
        kit.feed(_report(GOOD, now))
        kit.worker._retention()  # [monitoring] metrics_retention_days = 7
        assert [r.end for _, r in _windows(kit)] == [now]
