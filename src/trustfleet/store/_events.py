"""Repository of the append-only security event log (the entries of the audit log)."""

from __future__ import annotations

import builtins
from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Final, cast

import sqlalchemy as sa
from sqlalchemy import func, select

from trustfleet.audit.context import current_origin
from trustfleet.audit.entry import AuditEntry, encode_entry
from trustfleet.store import _validate as check
from trustfleet.store._models import SecurityEventRow
from trustfleet.store._rows import record_of
from trustfleet.store._session import SessionHandle
from trustfleet.store.records import JSON, SecurityEventRecord

__all__ = [
    "MAX_EVENT_DETAILS_BYTES",
    "OUTCOMES",
    "EventRepository",
    "entry_of",
]

MAX_EVENT_DETAILS_BYTES: Final = 60 * 1024
"""Default bound on the JSON size of one event's details (the whole entry must fit 64 KiB)."""

OUTCOMES: Final = ("ok", "refused")
"""``ok``: the change took effect; ``refused``: a request was refused and nothing changed."""


def entry_of(event: SecurityEventRecord) -> AuditEntry:
    """The audit-log entry of a stored event (its bytes: ``encode_entry(entry_of(event))``)."""
    return AuditEntry(
        id=event.id,
        time=event.occurred_at,
        type=event.type,
        actor=event.actor,
        origin=event.origin,
        outcome=event.outcome,
        subject=event.subject,
        details=event.details,
    )


def _record(row: SecurityEventRow) -> SecurityEventRecord:
    return record_of(SecurityEventRecord, row)


_MAX_ID = select(func.max(SecurityEventRow.id))
_TABLE = cast(sa.Table, SecurityEventRow.__table__)
_INSERT = _TABLE.insert()
_COLUMNS = tuple(column.key for column in _TABLE.columns)


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
        self._last_id: int | None = None  # the id this transaction appended last

    def append(
        self,
        *,
        type: str,
        actor: str,
        subject: str,
        details: Mapping[str, JSON],
        now: datetime,
        outcome: str = "ok",
        origin: str | None = None,
    ) -> SecurityEventRecord:
        """Add an event at the end of the log.

        Args:
            type: Stable dotted name such as ``"certificate.issued"``.
            actor: Who caused it, e.g. ``"operator:alice@ops1"``, ``"device:<id>"``, ``"system"``.
            subject: What it is about, e.g. ``"device:<id>"``.
            details: A JSON object (string keys; no NaN or infinities), bounded in size.
            now: When it happened (timezone-aware).
            outcome: One of :data:`OUTCOMES`.
            origin: From where; default :func:`current_origin`.

        Returns:
            The stored event with its id.

        Raises:
            InvalidInput: A value is malformed or the details are too large.
        """
        record = SecurityEventRecord(
            occurred_at=check.aware(now, name="now"),
            type=check.event_type(type),
            actor=check.text(actor, name="actor", max_chars=128),
            subject=check.text(subject, name="subject", max_chars=128),
            details=check.json_object(details, max_bytes=self._max_details_bytes),
            origin=check.text(origin or current_origin(), name="origin", max_chars=256),
            outcome=check.one_of(outcome, OUTCOMES, name="outcome"),
            id=self._next_id(),  # last: only once the values are valid
        )
        conn = self._handle.session.connection()  # Core on the connection: no ORM layer
        encode_entry(entry_of(record))  # refuses what the audit log could not hold
        nested = conn.in_nested_transaction()
        self._last_id = None
        conn.execute(_INSERT, {name: getattr(record, name) for name in _COLUMNS})
        self._last_id = None if nested else record.id
        return record

    def _next_id(self) -> int:
        """The next id, under the log's write lock (taken here on PostgreSQL).

        The lock is held until the transaction ends (the database lock on SQLite: BEGIN
        IMMEDIATE), so after this transaction's first append outside a savepoint its last id
        stays the log's last one: later appends need neither the lock again nor the query.
        Inside a savepoint, whose rollback would undo the row (and a lock taken in it), both
        are done every time.
        """
        conn = self._handle.session.connection()
        if self._last_id is not None and not conn.in_nested_transaction():
            return self._last_id + 1
        if conn.dialect.name == "postgresql":
            # Appenders take turns, so ids are dense and committed in order. Plain reads
            # (ACCESS SHARE) are not blocked.
            conn.exec_driver_sql("LOCK TABLE security_events IN EXCLUSIVE MODE")
        return (conn.scalar(_MAX_ID) or 0) + 1

    def list(
        self,
        *,
        after_id: int = 0,
        limit: int = 100,
        type: str | tuple[str, ...] | None = None,
        subject: str | None = None,
        actor: str | None = None,
        device: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> builtins.list[SecurityEventRecord]:
        """Events with an id greater than ``after_id``, in log order.

        Args:
            after_id: Return only events after this one (0: from the start).
            limit: Most events to return (1 to 1000).
            type: Only events of this type (or of these types).
            subject: Only events about this subject.
            actor: Only events by this actor.
            device: Only events about or by this device (``device:<id>``).
            since: Only events at or after this time.
            until: Only events before this time.

        Raises:
            InvalidInput: The page is out of range.
        """
        limit, _ = check.page(limit=limit)
        row = SecurityEventRow
        query = select(row).where(row.id > after_id).order_by(row.id).limit(limit)
        if isinstance(type, tuple):
            query = query.where(row.type.in_(type))
        elif type is not None:
            query = query.where(row.type == type)
        if subject is not None:
            query = query.where(row.subject == subject)
        if actor is not None:
            query = query.where(row.actor == actor)
        if device is not None:
            name = f"device:{device}"
            query = query.where(sa.or_(row.subject == name, row.actor == name))
        if since is not None:
            query = query.where(row.occurred_at >= check.aware(since, name="since"))
        if until is not None:
            query = query.where(row.occurred_at < check.aware(until, name="until"))
        return [_record(r) for r in self._handle.session.scalars(query)]

    def page(
        self,
        *,
        types: tuple[str, ...] | None = None,
        type_prefix: str | None = None,
        actor: str | None = None,
        subject: str | None = None,
        outcome: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        newest_first: bool = True,
        limit: int = 100,
        offset: int = 0,
    ) -> builtins.list[SecurityEventRecord]:
        """A page of events by id (newest first unless told), every given filter applied.

        Args:
            types: Only events of these types.
            type_prefix: Only events whose type starts with this (wildcards match themselves).
            actor: Only events by this actor.
            subject: Only events about this subject.
            outcome: Only events with this outcome.
            since: Only events at or after this time.
            until: Only events before this time.
            newest_first: Descending ids (True) or log order (False).
            limit: Most events to return (1 to 1000).
            offset: Events to skip.

        Raises:
            InvalidInput: The page is out of range or a time is naive.
        """
        limit, offset = check.page(limit=limit, offset=offset)
        row = SecurityEventRow
        order = row.id.desc() if newest_first else row.id.asc()
        query = select(row).order_by(order).limit(limit).offset(offset)
        if types is not None:
            query = query.where(row.type.in_(types))
        if type_prefix:
            query = query.where(row.type.startswith(type_prefix, autoescape=True))
        for column, value in ((row.actor, actor), (row.subject, subject), (row.outcome, outcome)):
            if value is not None:
                query = query.where(column == value)
        if since is not None:
            query = query.where(row.occurred_at >= check.aware(since, name="since"))
        if until is not None:
            query = query.where(row.occurred_at < check.aware(until, name="until"))
        return [_record(r) for r in self._handle.session.scalars(query)]

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

    def entries(self, *, after_id: int, limit: int) -> builtins.list[tuple[int, bytes]]:
        """``(id, entry bytes)`` of the events after ``after_id``, in id order, up to ``limit``.

        For the audit log (integration and checks): the canonical bytes of each event's entry,
        read through the Core layer; any ``limit`` is allowed.
        """
        table = cast(sa.Table, SecurityEventRow.__table__)
        query = select(table).where(table.c.id > after_id).order_by(table.c.id).limit(limit)
        conn = self._handle.session.connection()
        return [
            (row["id"], encode_entry(entry_of(SecurityEventRecord(**row))))
            for row in conn.execute(query).mappings()
        ]

    def last_id(self) -> int:
        """The id of the newest event, or 0 when the log is empty (also its length)."""
        return self._handle.session.scalar(select(func.max(SecurityEventRow.id))) or 0
