"""Repository of metrics windows and the monitor's cursor (tables ``monitor_metrics``,
``monitor_cursor``).

A window is stored once per device, source and end (a re-sent report is skipped). Rows come back
as :class:`trustfleet.monitoring.MetricsRecord` with the device's model from ``devices``.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite

from trustfleet.monitoring import MetricsRecord
from trustfleet.store import _validate as check
from trustfleet.store._models import DeviceRow
from trustfleet.store._monitor_models import MonitorCursorRow, MonitorMetricsRow
from trustfleet.store._session import SessionHandle

__all__ = ["MonitorMetricsRepository"]

_TABLE = cast(sa.Table, MonitorMetricsRow.__table__)
_CURSORS = cast(sa.Table, MonitorCursorRow.__table__)
_DEVICES = cast(sa.Table, DeviceRow.__table__)


def _values(record: MetricsRecord, received_at: datetime) -> dict[str, Any]:
    return {
        "device_id": record.device_id,
        "source": record.source,
        "window_end": record.end,
        "interval_s": int(record.interval_s),
        "numbers": {str(k): float(v) for k, v in record.numbers.items()},
        "sets": {str(k): sorted(str(m) for m in v) for k, v in record.sets.items()},
        "received_at": received_at,
    }


def _record(row: Any) -> MetricsRecord:
    return MetricsRecord(
        device_id=row.device_id,
        model=row.model,
        source=row.source,
        end=row.window_end,
        interval_s=row.interval_s,
        numbers={str(k): float(v) for k, v in dict(row.numbers).items()},
        sets={str(k): frozenset(str(m) for m in v) for k, v in dict(row.sets).items()},
    )


class MonitorMetricsRepository:
    """Metrics windows and the monitor's cursor. Get it as ``tx.monitor_metrics``."""

    def __init__(self, handle: SessionHandle) -> None:
        self._handle = handle

    def add_many(self, records: Sequence[MetricsRecord], *, received_at: datetime) -> int:
        """Store windows; one already stored for its device, source and end is skipped.

        Returns:
            How many were inserted.
        """
        if not records:
            return 0
        conn = self._handle.session.connection()
        insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
        statement = insert(_TABLE).on_conflict_do_nothing().returning(_TABLE.c.id)
        return len(conn.execute(statement, [_values(r, received_at) for r in records]).all())

    def _select(self) -> sa.Select[Any]:
        return select(_TABLE, _DEVICES.c.model).join(_DEVICES, _DEVICES.c.id == _TABLE.c.device_id)

    def after(
        self, after_id: int, *, limit: int = 1000
    ) -> builtins.list[tuple[int, MetricsRecord]]:
        """Windows stored after ``after_id``, in id order, with their ids.

        Raises:
            InvalidInput: The page is out of range.
        """
        limit, _ = check.page(limit=limit)
        query = self._select().where(_TABLE.c.id > after_id).order_by(_TABLE.c.id).limit(limit)
        rows = self._handle.session.connection().execute(query)
        return [(int(row.id), _record(row)) for row in rows]

    def first_id_since(self, received_at: datetime) -> int:
        """The id just before the first window received at or after ``received_at`` (the
        ``after_id`` to read from; the newest id when none is that recent)."""
        first = self._handle.session.connection().execute(
            select(sa.func.min(_TABLE.c.id)).where(_TABLE.c.received_at >= received_at)
        ).scalar()
        return int(first) - 1 if first is not None else self.last_id()

    def last_id(self) -> int:
        """The newest window's id (0 when there is none)."""
        value = self._handle.session.connection().execute(select(sa.func.max(_TABLE.c.id)))
        return int(value.scalar() or 0)

    def counts(self, *, source: str | None = None) -> dict[str, int]:
        """How many windows each device has (of ``source`` only, if given)."""
        query = select(_TABLE.c.device_id, sa.func.count()).group_by(_TABLE.c.device_id)
        if source is not None:
            query = query.where(_TABLE.c.source == source)
        rows = self._handle.session.connection().execute(query)
        return {str(device_id): int(n) for device_id, n in rows}

    def delete_before(self, cutoff: datetime) -> int:
        """Drop windows received before ``cutoff`` (retention). Returns how many."""
        result = self._handle.session.connection().execute(
            delete(_TABLE).where(_TABLE.c.received_at < cutoff)
        )
        return int(result.rowcount or 0)

    def cursor(self, name: str) -> int:
        """How far the reader ``name`` has gone (0 when it never ran)."""
        query = select(_CURSORS.c.last_id).where(_CURSORS.c.name == name)
        value = self._handle.session.connection().execute(query).scalar()
        return int(value or 0)

    def set_cursor(self, name: str, last_id: int, *, now: datetime) -> None:
        """Record how far the reader ``name`` has gone."""
        conn = self._handle.session.connection()
        insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
        statement = insert(_CURSORS).values(name=name, last_id=last_id, updated_at=now)
        conn.execute(
            statement.on_conflict_do_update(
                index_elements=[_CURSORS.c.name],
                set_={"last_id": last_id, "updated_at": now},
            )
        )
