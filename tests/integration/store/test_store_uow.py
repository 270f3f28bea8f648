"""The unit of work commits on success, rolls everything back on error, and ends cleanly."""

from __future__ import annotations

import threading
from datetime import datetime

import pytest
import sqlalchemy

from trustfleet.errors import TrustFleetError, Unavailable
from trustfleet.store import UnitOfWork, create_engine


class Boom(Exception):
    """Raised inside a transaction by the tests."""


def test_exception_rolls_back_everything(uow: UnitOfWork, now: datetime) -> None:
    with pytest.raises(Boom), uow.begin() as tx:
        tx.devices.add(id="dev-1", model="m", now=now)
        tx.events.append(
            type="device.registered", actor="system", subject="device:dev-1", details={}, now=now
        )
        tx.crls.put(issuer="device", crl_number=1, this_update=now, next_update=now, der=b"c")
        raise Boom
    with uow.begin() as tx:
        assert tx.devices.get("dev-1") is None
        assert tx.events.list() == []
        assert tx.crls.get("device") is None
    with uow.begin() as tx:  # the next event still gets id 1: a rollback leaves no gap
        event = tx.events.append(
            type="device.registered", actor="system", subject="x", details={}, now=now
        )
    assert event.id == 1


def test_transaction_cannot_be_used_after_its_block(uow: UnitOfWork, now: datetime) -> None:
    with uow.begin() as tx:
        pass
    with pytest.raises(TrustFleetError, match="transaction has ended"):
        tx.devices.add(id="late", model="m", now=now)


def test_unreachable_database_is_unavailable(postgres_cluster: object) -> None:
    del postgres_cluster  # only to run where PostgreSQL tests run
    engine = create_engine("postgresql+psycopg://postgres@127.0.0.1:1/postgres")
    try:
        with pytest.raises(Unavailable), UnitOfWork(engine).begin() as tx:
            tx.devices.get("x")
    finally:
        engine.dispose()


def test_threads_share_one_engine(engine: sqlalchemy.Engine, now: datetime) -> None:
    uow = UnitOfWork(engine)
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for index in range(25):
                with uow.begin() as tx:
                    tx.devices.add(id=f"t{worker}-{index}", model="m", now=now)
                    tx.events.append(
                        type="device.registered",
                        actor="system",
                        subject=f"device:t{worker}-{index}",
                        details={"worker": worker},
                        now=now,
                    )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with uow.begin() as tx:
        assert tx.devices.count() == 100
        assert [e.id for e in tx.events.list(limit=1000)] == list(range(1, 101))


def test_read_only_transaction_sees_one_snapshot(uow: UnitOfWork, now: datetime) -> None:
    """Two reads in one read-only transaction see the same state even when another
    transaction commits between them (regression: under PostgreSQL's READ COMMITTED an
    enrollment check read a certificate as valid and then its newer successor, and refused
    with the wrong code)."""
    with uow.begin() as tx:
        tx.devices.add(id="snap-1", model="m", now=now)
    with uow.begin(read_only=True) as reader:
        assert reader.devices.get("snap-2") is None  # the snapshot starts here
        with uow.begin() as writer:
            writer.devices.add(id="snap-2", model="m", now=now)
        assert reader.devices.get("snap-2") is None
        assert reader.devices.get("snap-1") is not None
    with uow.begin(read_only=True) as tx:
        assert tx.devices.get("snap-2") is not None


def test_read_only_transaction_refuses_writes_on_postgresql(
    uow: UnitOfWork, engine: sqlalchemy.Engine, now: datetime
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite's read transactions are only as read-only as their lock allows")
    # A programming error, not an operator's: the database's own error goes up as it is.
    with (
        pytest.raises(sqlalchemy.exc.InternalError, match="read-only"),
        uow.begin(read_only=True) as tx,
    ):
        tx.devices.add(id="ro-1", model="m", now=now)
