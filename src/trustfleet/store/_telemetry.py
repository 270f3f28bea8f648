"""Repository of telemetry rows: batch inserts, per-device reads, bounded retention."""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy import delete, func, select
from sqlalchemy.dialects import postgresql, sqlite

from trustfleet.errors import InvalidInput
from trustfleet.store import _validate as check
from trustfleet.store._models import TelemetryRow
from trustfleet.store._rows import record_of
from trustfleet.store._session import SessionHandle
from trustfleet.store.records import TelemetryFields, TelemetryRecord

__all__ = [
    "MAX_BOOT_CHARS",
    "MAX_METRICS_BYTES",
    "NewTelemetry",
    "TelemetryRepository",
    "check_metrics",
]

MAX_METRICS_BYTES = 16 * 1024
"""Bound on the JSON size of one row's metrics (the MQTT payload bound)."""
MAX_BOOT_CHARS = 32
"""Bound on a boot id (the column's width)."""


def check_metrics(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The metrics exactly as :meth:`TelemetryRepository.add_many` stores them.

    The ingest verifier calls this before a message joins a batch, so a message the store
    would refuse is refused alone (docs/mqtt.md).

    Raises:
        InvalidInput: Not a JSON object, not representable, or over :data:`MAX_METRICS_BYTES`
            once encoded (code ``store.bad_details`` or ``store.details_too_large``).
    """
    return check.json_object(metrics, max_bytes=MAX_METRICS_BYTES)


@dataclass(frozen=True, slots=True, kw_only=True)
class NewTelemetry(TelemetryFields):
    """A telemetry row to insert (see :class:`~trustfleet.store.records.TelemetryRecord`)."""


def _values(r: NewTelemetry) -> dict[str, Any]:
    return {
        "device_id": check.text(r.device_id, name="device id", max_chars=64),
        "received_at": check.aware(r.received_at, name="received_at"),
        "device_ts": None if r.device_ts is None else check.aware(r.device_ts, name="device_ts"),
        "seq": None if r.seq is None else check.bigint(r.seq, name="seq"),
        "metrics": check_metrics(r.metrics),
        "boot": None
        if r.boot is None
        else check.text(r.boot, name="boot", max_chars=MAX_BOOT_CHARS),
    }


def _record(row: Any) -> TelemetryRecord:
    return record_of(TelemetryRecord, row)


class TelemetryRepository:
    """Telemetry, within one transaction. Get it as ``tx.telemetry``."""

    def __init__(self, handle: SessionHandle) -> None:
        self._handle = handle

    @property
    def _table(self) -> sa.Table:
        return cast(sa.Table, TelemetryRow.__table__)

    def add_many(self, rows: Sequence[NewTelemetry]) -> int:
        """Insert rows; a row whose (device, boot, seq) is already stored is skipped.

        Returns:
            How many rows were inserted (duplicates not counted).

        Raises:
            InvalidInput: A value is malformed or a metrics object is too large.
        """
        values = [_values(r) for r in rows]
        if not values:
            return 0
        conn = self._handle.session.connection()
        insert = (
            postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
        )  # both spell "INSERT ... ON CONFLICT DO NOTHING" the same way
        statement = insert(self._table).on_conflict_do_nothing().returning(self._table.c.id)
        # executemany with RETURNING: SQLAlchemy batches it into multi-row INSERTs
        # ("insertmanyvalues"); the ids returned count what was inserted (rowcount is -1 on
        # psycopg).
        return len(conn.execute(statement, values).all())

    def list_for_device(
        self, device_id: str, *, limit: int = 100, after_id: int = 0
    ) -> builtins.list[TelemetryRecord]:
        """A device's rows in insertion order, after ``after_id``.

        Raises:
            InvalidInput: The page is out of range.
        """
        limit, _ = check.page(limit=limit)
        t = self._table
        query = (
            select(t)
            .where(t.c.device_id == device_id, t.c.id > after_id)
            .order_by(t.c.id)
            .limit(limit)
        )
        return [_record(row) for row in self._handle.session.connection().execute(query)]

    def page_for_device(
        self,
        device_id: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> builtins.list[TelemetryRecord]:
        """A device's rows, newest first, received in ``[since, until)`` when given.

        Raises:
            InvalidInput: The page is out of range or a time is naive.
        """
        limit, offset = check.page(limit=limit, offset=offset)
        t = self._table
        query = (
            select(t)
            .where(t.c.device_id == device_id)
            .order_by(t.c.received_at.desc(), t.c.id.desc())
            .limit(limit)
            .offset(offset)
        )
        if since is not None:
            query = query.where(t.c.received_at >= check.aware(since, name="since"))
        if until is not None:
            query = query.where(t.c.received_at < check.aware(until, name="until"))
        return [_record(row) for row in self._handle.session.connection().execute(query)]

    def count(self, *, device_id: str | None = None) -> int:
        """How many rows there are, optionally of one device."""
        query = select(func.count()).select_from(self._table)
        if device_id is not None:
            query = query.where(self._table.c.device_id == device_id)
        return self._handle.session.scalar(query) or 0

    def delete_received_before(self, cutoff: datetime) -> int:
        """Delete every row received before ``cutoff``; how many were deleted."""
        cutoff = check.aware(cutoff, name="cutoff")
        result = self._handle.session.connection().execute(
            delete(self._table).where(self._table.c.received_at < cutoff)
        )
        return int(cast(sa.CursorResult[Any], result).rowcount or 0)

    def trim_to(self, max_rows: int) -> int:
        """Delete the oldest rows (by id) beyond the newest ``max_rows``; how many went."""
        if max_rows < 0:
            raise InvalidInput("max_rows must be at least 0", code="store.bad_bound")
        t = self._table
        # The id of the newest row that must go: everything at or below it is older.
        boundary = self._handle.session.scalar(
            select(t.c.id).order_by(t.c.id.desc()).offset(max_rows).limit(1)
        )
        if boundary is None:
            return 0
        result = self._handle.session.connection().execute(delete(t).where(t.c.id <= boundary))
        return int(cast(sa.CursorResult[Any], result).rowcount or 0)
