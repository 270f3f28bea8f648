"""Ingest at the service level: the message verifier, batches, and bounded retention."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from trustfleet.errors import InvalidInput
from trustfleet.services.ingest import apply_retention, parse_message, store_batch
from trustfleet.store import NewTelemetry, UnitOfWork, create_engine, migrate

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DEV = "dev-00000001"
TOPIC = f"tf/v1/d/{DEV}/telemetry"
GOOD = {"ts": "2026-03-01T11:59:59Z", "seq": 3, "metrics": {"t": 1.5}}


@pytest.fixture
def uow(db_url: str) -> Iterator[UnitOfWork]:
    engine = create_engine(db_url)
    migrate(engine)
    uow = UnitOfWork(engine)
    with uow.begin() as tx:
        tx.devices.add(id=DEV, model="m", state="enrolled", now=T0)
        tx.devices.add(id="dev-revoked1", model="m", state="revoked", now=T0)
    yield uow
    engine.dispose()


BAD = {
    "not-json": (TOPIC, b"nope"),
    "not-utf8": (TOPIC, b"\xff\xfe"),
    "array": (TOPIC, b"[1]"),
    "too-big": (TOPIC, json.dumps({**GOOD, "pad": "x" * 17_000}).encode()),
    "deep": (TOPIC, b"[" * 100_000 + b"]" * 100_000),
    "nan": (TOPIC, b'{"ts": "2026-03-01T11:59:59Z", "seq": 1, "metrics": {"t": NaN}}'),
    "naive-ts": (TOPIC, json.dumps({**GOOD, "ts": "2026-03-01T11:59:59"}).encode()),
    "bool-seq": (TOPIC, json.dumps({**GOOD, "seq": True}).encode()),
    "bool-metric": (TOPIC, json.dumps({**GOOD, "metrics": {"t": True}}).encode()),
    "bad-topic": ("tf/v1/d/x/telemetry", json.dumps(GOOD).encode()),
    "other-kind": (f"tf/v1/d/{DEV}/ota/x", json.dumps(GOOD).encode()),
    "event-no-type": (f"tf/v1/d/{DEV}/events", json.dumps({"ts": GOOD["ts"], "seq": 1}).encode()),
}


@pytest.mark.parametrize(("topic", "payload"), BAD.values(), ids=BAD.keys())
def test_messages_breaking_the_contract_are_refused(topic: str, payload: bytes) -> None:
    with pytest.raises(InvalidInput):
        parse_message(topic, payload, now=T0)


def test_batch_stores_enrolled_devices_only_and_marks_them_seen(uow: UnitOfWork) -> None:
    good = parse_message(TOPIC, json.dumps(GOOD).encode(), now=T0)
    revoked = parse_message("tf/v1/d/dev-revoked1/telemetry", json.dumps(GOOD).encode(), now=T0)
    unknown = parse_message("tf/v1/d/dev-unknown1/telemetry", json.dumps(GOOD).encode(), now=T0)
    outcome = store_batch(uow, [good, revoked, unknown], now=T0)
    assert (outcome.telemetry_rows, outcome.refused) == (1, 2)
    assert outcome.refused_devices == ("dev-revoked1", "dev-unknown1")
    with uow.begin(read_only=True) as tx:
        (row,) = tx.telemetry.list_for_device(DEV)
        assert (row.seq, row.device_ts, dict(row.metrics)) == (
            3,
            T0 - timedelta(seconds=1),
            {"t": 1.5},
        )
        assert tx.devices.require(DEV).last_seen_at == T0
        assert tx.devices.require("dev-revoked1").last_seen_at is None
    store_batch(uow, [good], now=T0 - timedelta(hours=1))  # last_seen_at never moves back
    with uow.begin(read_only=True) as tx:
        assert tx.devices.require(DEV).last_seen_at == T0


def _rows(uow: UnitOfWork, ages: list[timedelta]) -> None:
    with uow.begin() as tx:
        tx.telemetry.add_many(
            [
                NewTelemetry(device_id=DEV, received_at=T0 - age, device_ts=None, seq=i, metrics={})
                for i, age in enumerate(ages)
            ]
        )


def test_retention_deletes_rows_older_than_the_window(uow: UnitOfWork) -> None:
    _rows(uow, [timedelta(days=8), timedelta(days=7, seconds=1), timedelta(days=6), timedelta(0)])
    outcome = apply_retention(uow, now=T0, retention_days=7, max_rows=1000)
    assert (outcome.expired, outcome.trimmed) == (2, 0)
    with uow.begin(read_only=True) as tx:
        assert [r.seq for r in tx.telemetry.list_for_device(DEV)] == [2, 3]
    # Time passes: the same job later removes what aged out meanwhile.
    later = apply_retention(uow, now=T0 + timedelta(days=2), retention_days=7, max_rows=1000)
    assert later.expired == 1


def test_retention_keeps_at_most_max_rows_newest_first(uow: UnitOfWork) -> None:
    _rows(uow, [timedelta(minutes=m) for m in range(10, 0, -1)])
    outcome = apply_retention(uow, now=T0, retention_days=7, max_rows=4)
    assert (outcome.expired, outcome.trimmed) == (0, 6)
    with uow.begin(read_only=True) as tx:
        assert [r.seq for r in tx.telemetry.list_for_device(DEV)] == [6, 7, 8, 9]
