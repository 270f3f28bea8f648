"""The audit log's part of the store on both backends: entries, tiles, checkpoints, cosignatures."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
import sqlalchemy
from alembic import command

from trustfleet.audit.context import event_context
from trustfleet.audit.entry import decode_entry, encode_entry
from trustfleet.audit.merkle import leaf_hash
from trustfleet.audit.tiles import append_leaves, tree_root
from trustfleet.errors import Conflict, InvalidInput
from trustfleet.store import UnitOfWork, entry_of
from trustfleet.store._engine import alembic_config


def _append(uow: UnitOfWork, now: datetime, n: int, **kwargs: str) -> None:
    with uow.begin() as tx:
        for i in range(n):
            tx.events.append(
                type="device.registered", actor=kwargs.get("actor", "system"),
                subject=f"device:d{i % 3}", details={"i": i},
                now=now + timedelta(seconds=i),
                **{k: v for k, v in kwargs.items() if k != "actor"},  # type: ignore[arg-type]
            )  # fmt: skip


def test_entries_are_the_events_canonical_bytes_in_id_order(uow: UnitOfWork, now: datetime) -> None:
    with event_context(origin="cli host=t pid=1", operator="operator:alice@t"):
        _append(uow, now, 5)
    with uow.begin(read_only=True) as tx:
        entries = tx.events.entries(after_id=1, limit=10)
        records = tx.events.list(after_id=1)
    assert [i for i, _ in entries] == [2, 3, 4, 5]
    for (entry_id, data), record in zip(entries, records, strict=True):
        assert data == encode_entry(entry_of(record))
        decoded = decode_entry(data, id=entry_id)
        assert decoded.origin == "cli host=t pid=1" and decoded.outcome == "ok"
        assert decoded.time == record.occurred_at


def test_origin_defaults_to_the_process_and_outcome_is_checked(
    uow: UnitOfWork, now: datetime
) -> None:
    _append(uow, now, 1)
    with uow.begin(read_only=True) as tx:
        assert tx.events.list()[0].origin.startswith("process host=")
    with pytest.raises(InvalidInput, match="outcome"):
        _append(uow, now, 1, outcome="maybe")


def test_an_event_the_log_cannot_hold_is_refused_before_it_is_stored(
    uow: UnitOfWork, now: datetime
) -> None:
    with pytest.raises(InvalidInput), uow.begin() as tx:
        tx.events.append(type="device.registered", actor="system", subject="device:d",
                         details={"x": "y" * 62_000}, now=now)  # fmt: skip
    with uow.begin(read_only=True) as tx:
        assert tx.events.last_id() == 0


def test_list_filters_by_actor_device_and_time(uow: UnitOfWork, now: datetime) -> None:
    _append(uow, now, 6)
    _append(uow, now + timedelta(hours=1), 3, actor="device:d1")
    with uow.begin(read_only=True) as tx:
        assert len(tx.events.list(actor="device:d1")) == 3
        assert len(tx.events.list(device="d1")) == 2 + 3  # about d1 (i = 1, 4) or by it
        assert len(tx.events.list(since=now + timedelta(minutes=30))) == 3
        assert len(tx.events.list(until=now + timedelta(seconds=3))) == 3


def test_tiles_grow_and_checkpoints_are_append_only(
    uow: UnitOfWork, engine: sqlalchemy.Engine, now: datetime
) -> None:
    _append(uow, now, 300)
    with uow.begin() as tx:
        tx.audit.lock()
        leaves = [leaf_hash(data) for _, data in tx.events.entries(after_id=0, limit=1000)]
        first = append_leaves(size=0, read_tile=lambda *_: b"", leaf_hashes=leaves[:100])
        tx.audit.put_tiles(first.tiles)
        tx.audit.add_checkpoint(size=100, root=first.root, note=b"n100", signed_at=now)
    with uow.begin() as tx:
        stored = tx.audit.tiles(first.tiles)
        second = append_leaves(
            size=100, read_tile=lambda lv, ix: stored[(lv, ix)], leaf_hashes=leaves[100:]
        )
        tx.audit.put_tiles(second.tiles)  # the partial tile 0/0 grows in place
        tx.audit.add_checkpoint(size=300, root=second.root, note=b"n300", signed_at=now)
        tx.audit.add_cosignature(size=300, witness="w1", line="— w1 AAAA\n", now=now)
        tx.audit.add_cosignature(size=300, witness="w1", line="— w1 BBBB\n", now=now)  # kept once
    with uow.begin(read_only=True) as tx:
        assert tx.audit.latest_checkpoint().size == 300  # type: ignore[union-attr]
        assert tx.audit.checkpoint(100).note == b"n100"  # type: ignore[union-attr]
        assert tx.audit.cosignatures(300) == ["— w1 AAAA\n"]
        assert tx.audit.last_cosigned("w1") == 300 and tx.audit.last_cosigned("w2") == 0
        tiles = tx.audit.tiles([(0, 0), (0, 1), (1, 0)])
        assert len(tiles[(0, 0)]) == 256 * 32 and len(tiles[(0, 1)]) == 44 * 32
        assert tree_root(size=300, read_tile=lambda lv, ix: tiles[(lv, ix)]) == second.root
    for statement in ("UPDATE audit_checkpoints SET note = 'x'", "DELETE FROM audit_checkpoints"):
        with pytest.raises(sqlalchemy.exc.DBAPIError), engine.begin() as conn:
            conn.exec_driver_sql(statement)
    with pytest.raises(Conflict), uow.begin() as tx:
        tx.audit.add_checkpoint(size=300, root=b"\x00" * 32, note=b"again", signed_at=now)


def test_downgrading_0007_keeps_the_events_and_their_triggers(
    uow: UnitOfWork, engine: sqlalchemy.Engine, now: datetime
) -> None:
    """0007's downgrade drops its columns in place: a batch copy of the table would lose the
    append-only triggers of 0001."""
    _append(uow, now, 3)
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0006")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM security_events").scalar() == 3
    with pytest.raises(sqlalchemy.exc.DBAPIError), engine.begin() as conn:
        conn.exec_driver_sql("UPDATE security_events SET actor = 'attacker'")
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    with uow.begin(read_only=True) as tx:
        assert [e.outcome for e in tx.events.list()] == ["ok"] * 3
