"""Repository of the notifications outbox (table ``notifications``)."""

from __future__ import annotations

import builtins
from datetime import datetime
from typing import Any, Final, cast

import sqlalchemy as sa
from sqlalchemy import select, update

from trustfleet.errors import InvalidInput
from trustfleet.store import _validate as check
from trustfleet.store._monitor_models import NOTIFICATION_CHANNELS, NotificationRow
from trustfleet.store._rows import record_of
from trustfleet.store._session import SessionHandle, insert
from trustfleet.store.alert_records import NotificationRecord

__all__ = ["MAX_NOTIFICATION_BYTES", "NotificationRepository"]

MAX_NOTIFICATION_BYTES: Final = 32 * 1024
"""Bound on one stored notice."""
_TABLE = cast(sa.Table, NotificationRow.__table__)


class NotificationRepository:
    """The outbox of webhooks and syslog messages. Get it as ``tx.notifications``."""

    def __init__(self, handle: SessionHandle) -> None:
        self._handle = handle

    def _conn(self) -> sa.Connection:
        return self._handle.session.connection()

    def add(
        self, *, alert_id: int | None, channel: str, target: str, payload: str, now: datetime
    ) -> NotificationRecord:
        """Queue a notice for a receiver, due at once.

        Raises:
            InvalidInput: A value is malformed or the payload too large.
        """
        if len(payload.encode()) > MAX_NOTIFICATION_BYTES:
            raise InvalidInput("notification payload too large", code="store.bad_value")
        row = NotificationRow(
            alert_id=alert_id,
            channel=check.one_of(channel, NOTIFICATION_CHANNELS, name="channel"),
            target=check.text(target, name="target", max_chars=64),
            payload=payload, state="pending", attempts=0,
            next_attempt_at=check.aware(now, name="now"), last_error=None, created_at=now,
            sent_at=None,
        )  # fmt: skip
        insert(
            self._handle.session, row,
            duplicate="notification exists", missing_reference=f"alert {alert_id} not found",
        )  # fmt: skip
        return record_of(NotificationRecord, row)

    def get(self, id: int) -> NotificationRecord | None:
        """The notification with this id, or None."""
        row = self._conn().execute(select(_TABLE).where(_TABLE.c.id == id)).one_or_none()
        return None if row is None else record_of(NotificationRecord, row)

    def due(self, *, now: datetime, limit: int = 100) -> builtins.list[NotificationRecord]:
        """Pending notifications due at ``now``, the longest waiting first."""
        limit, _ = check.page(limit=limit)
        query = (
            select(_TABLE)
            .where(_TABLE.c.state == "pending", _TABLE.c.next_attempt_at <= now)
            .order_by(_TABLE.c.next_attempt_at, _TABLE.c.id)
            .limit(limit)
        )
        return [record_of(NotificationRecord, row) for row in self._conn().execute(query)]

    def for_alert(self, alert_id: int) -> builtins.list[NotificationRecord]:
        """An alert's notifications in the order they were queued."""
        query = select(_TABLE).where(_TABLE.c.alert_id == alert_id).order_by(_TABLE.c.id)
        return [record_of(NotificationRecord, row) for row in self._conn().execute(query)]

    def _set(self, id: int, **values: Any) -> bool:
        statement = (
            update(_TABLE).where(_TABLE.c.id == id, _TABLE.c.state == "pending").values(**values)
        )
        return bool(cast(sa.CursorResult[Any], self._conn().execute(statement)).rowcount)

    def mark_sent(self, id: int, *, attempts: int, now: datetime) -> bool:
        """A receiver accepted it; whether it was pending."""
        return self._set(id, state="sent", attempts=attempts, sent_at=now, last_error=None)

    def retry_at(self, id: int, *, attempts: int, at: datetime, error: str) -> bool:
        """An attempt failed; try again at ``at``. Whether it was pending."""
        return self._set(id, attempts=attempts, next_attempt_at=at, last_error=error[:300])

    def mark_failed(self, id: int, *, attempts: int, error: str) -> bool:
        """Give up after the last attempt; whether it was pending."""
        return self._set(id, state="failed", attempts=attempts, last_error=error[:300])
