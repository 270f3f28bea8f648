"""Migration 0006 and the telemetry insert: (device, boot, seq) stored at most once, on SQLite
and PostgreSQL; rows from before the migration, and rows without a boot id, are kept as they
are (issue 9 §1, finding 5)."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy
from alembic import command

from trustfleet.store import NewTelemetry, UnitOfWork, create_engine, migrate
from trustfleet.store._engine import alembic_config

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)  # stored values only: no clock is compared
DEV = "dev-00000001"


def _alembic(engine: sqlalchemy.Engine, action: str, revision: str) -> None:
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        getattr(command, action)(config, revision)


def _row(seq: int, boot: str | None) -> NewTelemetry:
    return NewTelemetry(
        device_id=DEV, received_at=NOW, device_ts=NOW, seq=seq, metrics={"n": seq}, boot=boot
    )


def test_rows_from_before_0006_survive_and_redeliveries_are_skipped(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        _alembic(engine, "upgrade", "0005")
        with engine.begin() as conn:
            conn.execute(
                sqlalchemy.text(
                    "INSERT INTO devices (id, model, state, created_at, updated_at) "
                    "VALUES (:id, 'm', 'enrolled', :now, :now)"
                ),
                {"id": DEV, "now": NOW.replace(tzinfo=None)},
            )
            for _ in range(2):  # an old duplicate: the unique index must still be creatable
                conn.execute(
                    sqlalchemy.text(
                        "INSERT INTO telemetry (device_id, received_at, seq, metrics) "
                        "VALUES (:d, :now, 1, '{}')"
                    ),
                    {"d": DEV, "now": NOW.replace(tzinfo=None)},
                )
        migrate(engine)
        uow = UnitOfWork(engine)
        with uow.begin() as tx:
            written = tx.telemetry.add_many(
                [_row(1, "b1"), _row(1, "b1"), _row(2, "b1"), _row(1, "b2"), _row(1, None)]
            )
        with uow.begin() as tx:
            again = tx.telemetry.add_many([_row(1, "b1"), _row(2, "b1"), _row(3, "b1")])
        assert (written, again) == (4, 1)
        with uow.begin(read_only=True) as tx:
            rows = sorted(
                ((r.boot or ""), r.seq) for r in tx.telemetry.list_for_device(DEV, limit=100)
            )
        assert rows == [("", 1), ("", 1), ("", 1), ("b1", 1), ("b1", 2), ("b1", 3), ("b2", 1)]
        _alembic(engine, "downgrade", "0005")
        _alembic(engine, "upgrade", "head")
        with uow.begin(read_only=True) as tx:
            assert tx.telemetry.count(device_id=DEV) == 7
    finally:
        engine.dispose()
