"""Repository of the append-only security event log."""

from __future__ import annotations

import builtins
from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Final, cast

import sqlalchemy as sa
from sqlalchemy import func, select

from trustfleet.store import _validate as check
from trustfleet.store._models import SecurityEventRow
from trustfleet.store._rows import record_of
from trustfleet.store._session import SessionHandle
from trustfleet.store.records import JSON, SecurityEventRecord

__all__ = ["MAX_EVENT_DETAILS_BYTES", "EventRepository"]

MAX_EVENT_DETAILS_BYTES: Final = 64 * 1024
"""Default bound on the JSON size of one event's details."""


def _record(row: SecurityEventRow) -> SecurityEventRecord:
    return record_of(SecurityEventRecord, row)


_MAX_ID = select(func.max(SecurityEventRow.id))


class EventRepository:
    """The security event log, within one transaction. Get it as ``tx.events``.

    Append-only: there is no update or delete, and database triggers refuse both. Ids are
    dense (1, 2, 3, …) and follow commit order: appending takes the log's write lock (the
    database lock on SQLite, a table lock on PostgreSQL) until the transaction ends, then
    uses the next id. A rolled-back transaction therefore leaves no gap.
    """

    def __init__(
        self, handle: SessionHandle, *, max_details_bytes: int = MAX_EVENT_DETAILS_BYTES
    ) -> None:
        self._handle = handle
        self._max_details_bytes = max_details_bytes

    def append(
        self,
        *,
        type: str,
        actor: str,
        subject: str,
        details: Mapping[str, JSON],
        now: datetime,
    ) -> SecurityEventRecord:
        """Add an event at the end of the log.

        Args:
            type: Stable dotted name such as ``"certificate.issued"``.
            actor: Who caused it, e.g. ``"operator:cli"``, ``"device:<id>"``, ``"system"``.
            subject: What it is about, e.g. ``"device:<id>"``.
            details: A JSON object (string keys; no NaN or infinities), bounded in size.
            now: When it happened (timezone-aware).

        Returns:
            The stored event with its id.

        Raises:
            InvalidInput: A value is malformed or the details are too large.
        """
        row = SecurityEventRow(
            occurred_at=check.aware(now, name="now"),
            type=check.event_type(type),
            actor=check.text(actor, name="actor", max_chars=128),
            subject=check.text(subject, name="subject", max_chars=128),
            details=check.json_object(details, max_bytes=self._max_details_bytes),
        )
        session = self._handle.session
        if session.get_bind().dialect.name == "postgresql":
            # Held until commit or rollback: appenders take turns, so ids are dense and
            # committed in order. Plain reads (ACCESS SHARE) are not blocked.
            session.connection().exec_driver_sql("LOCK TABLE security_events IN EXCLUSIVE MODE")
        # SQLite: BEGIN IMMEDIATE already holds the database's single write lock.
        conn = session.connection()  # Core on the connection: no ORM execution layer
        row.id = (conn.scalar(_MAX_ID) or 0) + 1
        table = cast(sa.Table, SecurityEventRow.__table__)
        conn.execute(table.insert(), {c.key: getattr(row, c.key) for c in table.columns})
        return _record(row)

    def list(
        self,
        *,
        after_id: int = 0,
        limit: int = 100,
        type: str | tuple[str, ...] | None = None,
        subject: str | None = None,
    ) -> builtins.list[SecurityEventRecord]:
        """Events with an id greater than ``after_id``, in log order.

        Args:
            after_id: Return only events after this one (0: from the start).
            limit: Most events to return (1 to 1000).
            type: Only events of this type (or of these types).
            subject: Only events about this subject.

        Raises:
            InvalidInput: The page is out of range.
        """
        limit, _ = check.page(limit=limit)
        query = (
            select(SecurityEventRow)
            .where(SecurityEventRow.id > after_id)
            .order_by(SecurityEventRow.id)
            .limit(limit)
        )
        if isinstance(type, tuple):
            query = query.where(SecurityEventRow.type.in_(type))
        elif type is not None:
            query = query.where(SecurityEventRow.type == type)
        if subject is not None:
            query = query.where(SecurityEventRow.subject == subject)
        return [_record(row) for row in self._handle.session.scalars(query)]

    def last_about(self, subject: str, *, types: Collection[str]) -> SecurityEventRecord | None:
        """The newest event about ``subject`` whose type is one of ``types``, or None.

        Args:
            subject: What the event is about, e.g. ``"device:<id>"``.
            types: The event types to consider (at least one).
        """
        query = (
            select(SecurityEventRow)
            .where(SecurityEventRow.subject == subject, SecurityEventRow.type.in_(list(types)))
            .order_by(SecurityEventRow.id.desc())
            .limit(1)
        )
        row = self._handle.session.scalars(query).first()
        return None if row is None else _record(row)

    def last_id(self) -> int:
        """The id of the newest event, or 0 when the log is empty (also its length)."""
        return self._handle.session.scalar(select(func.max(SecurityEventRow.id))) or 0
