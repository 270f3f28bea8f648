"""The security event log: append-only on both backends, dense ids, many writers, JSON."""

from __future__ import annotations

import multiprocessing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trustfleet.errors import InvalidInput
from trustfleet.store import (
    JSON,
    SecurityEventRecord,
    Transaction,
    UnitOfWork,
    create_engine,
    migrate,
    sqlite_url,
)

WRITERS = 4
EVENTS_PER_WRITER = 200


def _append(uow: UnitOfWork, now: datetime, **details: Any) -> int:
    with uow.begin() as tx:
        return _append_in(tx, now, **details)


def _append_in(tx: Transaction, now: datetime, **details: Any) -> int:
    return tx.events.append(
        type="certificate.issued", actor="system", subject="device:d1", details=details, now=now
    ).id


def test_ids_stay_dense_in_one_transaction_around_a_savepoint_and_a_rollback(
    uow: UnitOfWork, now: datetime
) -> None:
    # An append after the transaction's first reuses the id it knows; not one whose row a
    # rolled-back savepoint took away, nor one of a rolled-back transaction.
    with uow.begin() as tx:
        first = [_append_in(tx, now, n=n) for n in range(3)]
        savepoint = tx.events._handle.session.begin_nested()  # the store test may reach in
        assert _append_in(tx, now, n="undone") == 4
        savepoint.rollback()
        after = [_append_in(tx, now, n=n) for n in range(3, 5)]
    with pytest.raises(RuntimeError), uow.begin() as tx:
        _append_in(tx, now, n="rolled back")
        raise RuntimeError
    assert first + after == [1, 2, 3, 4, 5]
    assert _append(uow, now, n=5) == 6
    with uow.begin() as tx:
        assert [e.details["n"] for e in tx.events.list()] == list(range(6))


def test_ids_increase_and_list_pages(uow: UnitOfWork, now: datetime) -> None:
    ids = [_append(uow, now + timedelta(seconds=n), n=n) for n in range(10)]
    assert ids == list(range(1, 11))
    with uow.begin() as tx:
        assert [e.id for e in tx.events.list(after_id=7)] == [8, 9, 10]
        assert [e.id for e in tx.events.list(limit=3)] == [1, 2, 3]
        assert tx.events.list(type="device.registered") == []
        assert len(tx.events.list(subject="device:d1")) == 10
        assert tx.events.last_id() == 10


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE security_events SET actor = 'attacker'",
        "DELETE FROM security_events",
        "DELETE FROM security_events WHERE id = 1",
    ],
    ids=["update", "delete-all", "delete-one"],
)
def test_triggers_refuse_update_and_delete(
    engine: sqlalchemy.Engine, uow: UnitOfWork, now: datetime, statement: str
) -> None:
    _append(uow, now)
    with pytest.raises(sqlalchemy.exc.IntegrityError, match="append-only"), engine.begin() as conn:
        conn.exec_driver_sql(statement)
    with uow.begin() as tx:
        (event,) = tx.events.list()
    assert event.actor == "system"


@pytest.mark.postgres
def test_truncate_refused_on_postgresql(postgres_db_url: str, now: datetime) -> None:
    engine = create_engine(postgres_db_url)
    try:
        migrate(engine)
        _append(UnitOfWork(engine), now)
        with (
            pytest.raises(sqlalchemy.exc.IntegrityError, match="append-only"),
            engine.begin() as conn,
        ):
            conn.exec_driver_sql("TRUNCATE security_events")
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    "details",
    [{"x": float("nan")}, {"x": float("inf")}, {1: "int key"}, {"x": b"bytes"}, {"x": object()}],
    ids=["nan", "inf", "int-key", "bytes", "object"],
)
def test_non_json_details_are_refused(uow: UnitOfWork, now: datetime, details: Any) -> None:
    with uow.begin() as tx, pytest.raises(InvalidInput):
        tx.events.append(type="a.b", actor="system", subject="s", details=details, now=now)


def test_oversized_details_are_refused(engine: sqlalchemy.Engine, now: datetime) -> None:
    uow = UnitOfWork(engine, max_event_details_bytes=100)
    with uow.begin() as tx, pytest.raises(InvalidInput, match="exceed 100 bytes"):
        tx.events.append(type="a.b", actor="system", subject="s", details={"x": "y" * 100}, now=now)


@pytest.mark.parametrize(
    "event_type", ["Device.Registered", "device", "device..x", ".x", "a" * 70 + ".b"]
)
def test_bad_event_types_are_refused(uow: UnitOfWork, now: datetime, event_type: str) -> None:
    with uow.begin() as tx, pytest.raises(InvalidInput):
        tx.events.append(type=event_type, actor="system", subject="s", details={}, now=now)


JSON_VALUES: st.SearchStrategy[JSON] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(details=st.dictionaries(st.text(max_size=10), JSON_VALUES, max_size=6))
def test_details_round_trip(uow: UnitOfWork, details: dict[str, JSON]) -> None:
    now = datetime(2025, 1, 1, tzinfo=UTC)
    with uow.begin() as tx:
        appended = tx.events.append(
            type="enrollment.refused", actor="system", subject="s", details=details, now=now
        )
    with uow.begin() as tx:
        (stored,) = tx.events.list(after_id=appended.id - 1, limit=1)
    assert stored.details == details
    assert appended.details == details


def _writer(url: str, worker: int) -> None:
    engine = create_engine(url)
    uow = UnitOfWork(engine)
    now = datetime(2025, 1, 1, tzinfo=UTC)
    per_transaction = 1 if worker % 2 else 5  # a transaction of several appends, too
    for start in range(0, EVENTS_PER_WRITER, per_transaction):
        with uow.begin() as tx:
            for index in range(start, start + per_transaction):
                tx.events.append(
                    type="device.registered",
                    actor=f"worker:{worker}",
                    subject=f"device:{worker}-{index}",
                    details={"worker": worker, "index": index},
                    now=now,
                )
    engine.dispose()


def test_concurrent_processes_append_to_one_sqlite_file(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "shared.db")
    engine = create_engine(url)
    migrate(engine)
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_writer, args=(url, n)) for n in range(WRITERS)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=240)
    assert [p.exitcode for p in processes] == [0] * WRITERS
    uow = UnitOfWork(engine)
    events: list[SecurityEventRecord] = []
    with uow.begin() as tx:
        while batch := tx.events.list(after_id=events[-1].id if events else 0, limit=1000):
            events.extend(batch)
    engine.dispose()
    assert [e.id for e in events] == list(range(1, WRITERS * EVENTS_PER_WRITER + 1))
    seen = {(e.details["worker"], e.details["index"]) for e in events}
    assert seen == {(w, i) for w in range(WRITERS) for i in range(EVENTS_PER_WRITER)}
    for worker in range(WRITERS):  # each writer's events are in its own order
        indexes = [e.details["index"] for e in events if e.details["worker"] == worker]
        assert indexes == list(range(EVENTS_PER_WRITER))
