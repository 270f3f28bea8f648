"""Metrics windows in the store (migration 0009), on SQLite and PostgreSQL: stored once per
device, source and window end; read back in id order with the device's model; the monitor's
cursor; retention."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from trustfleet.monitoring import MetricsRecord
from trustfleet.store import UnitOfWork

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)  # stored values only: no clock is compared


def _window(device: str, minute: int, *, source: str = "device") -> MetricsRecord:
    return MetricsRecord(
        device_id=device,
        model="ignored-on-write",
        source=source,  # type: ignore[arg-type]  # the test passes the two literal values
        end=NOW + timedelta(minutes=minute),
        interval_s=60,
        numbers={"all-bytes-out": 1000.0 + minute},
        sets={"listening-tcp-ports": frozenset({"22", "8883"})},
    )


def test_windows_are_stored_once_and_read_in_order(uow: UnitOfWork) -> None:
    with uow.begin() as tx:
        tx.devices.add(id="dev-0000000a", model="gateway-x", now=NOW)
        tx.devices.add(id="dev-0000000b", model="sensor-y", now=NOW)
    with uow.begin() as tx:
        batch = [_window("dev-0000000a", 1), _window("dev-0000000b", 1)]
        assert tx.monitor_metrics.add_many(batch, received_at=NOW) == 2
    with uow.begin() as tx:  # a re-sent report, and the service's view of the same window
        again = [_window("dev-0000000a", 1), _window("dev-0000000a", 1, source="service")]
        assert tx.monitor_metrics.add_many(again, received_at=NOW) == 1
    with uow.begin(read_only=True) as tx:
        rows = tx.monitor_metrics.after(0)
        assert [r.device_id for _, r in rows] == ["dev-0000000a", "dev-0000000b", "dev-0000000a"]
        assert [r.model for _, r in rows] == ["gateway-x", "sensor-y", "gateway-x"]
        first = rows[0][1]
        assert first.sets == {"listening-tcp-ports": frozenset({"22", "8883"})}
        assert first.numbers == {"all-bytes-out": 1001.0}
        assert first.end == NOW + timedelta(minutes=1)
        assert tx.monitor_metrics.after(rows[1][0]) == rows[2:]
        assert tx.monitor_metrics.last_id() == rows[2][0]


def test_cursor_and_retention(uow: UnitOfWork) -> None:
    with uow.begin() as tx:
        tx.devices.add(id="dev-0000000c", model="m", now=NOW)
        tx.monitor_metrics.add_many([_window("dev-0000000c", 0)], received_at=NOW)
        tx.monitor_metrics.add_many(
            [_window("dev-0000000c", 5)], received_at=NOW + timedelta(days=2)
        )
    with uow.begin() as tx:
        assert tx.monitor_metrics.cursor("monitor") == 0
        tx.monitor_metrics.set_cursor("monitor", 7, now=NOW)
        tx.monitor_metrics.set_cursor("monitor", 9, now=NOW)
        assert tx.monitor_metrics.cursor("monitor") == 9
        assert tx.monitor_metrics.delete_before(NOW + timedelta(days=1)) == 1
        assert len(tx.monitor_metrics.after(0)) == 1


def test_counts_and_where_a_period_starts(uow: UnitOfWork) -> None:
    with uow.begin() as tx:
        tx.devices.add(id="dev-0000000d", model="m", now=NOW)
        tx.devices.add(id="dev-0000000e", model="m", now=NOW)
        assert tx.monitor_metrics.first_id_since(NOW) == 0  # nothing yet
        tx.monitor_metrics.add_many([_window("dev-0000000d", 0)], received_at=NOW)
        later = [_window("dev-0000000d", 1), _window("dev-0000000e", 1, source="service")]
        tx.monitor_metrics.add_many(later, received_at=NOW + timedelta(hours=1))
    with uow.begin(read_only=True) as tx:
        ids = [i for i, _ in tx.monitor_metrics.after(0)]
        assert tx.monitor_metrics.first_id_since(NOW + timedelta(minutes=30)) == ids[0]
        assert tx.monitor_metrics.first_id_since(NOW - timedelta(days=1)) == ids[0] - 1
        assert tx.monitor_metrics.first_id_since(NOW + timedelta(days=1)) == ids[-1]
        assert tx.monitor_metrics.counts() == {"dev-0000000d": 2, "dev-0000000e": 1}
        assert tx.monitor_metrics.counts(source="device") == {"dev-0000000d": 2}
