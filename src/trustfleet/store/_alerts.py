"""Repositories of alerts and their actions (tables ``alerts``, ``alert_actions``)."""

from __future__ import annotations

import builtins
import dataclasses
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final, cast

import sqlalchemy as sa
from sqlalchemy import select, update

from trustfleet.errors import InvalidInput, NotFound
from trustfleet.store import _validate as check
from trustfleet.store._monitor_models import (
    ACTION_MODES,
    ACTION_STATES,
    ALERT_ACTIONS,
    ALERT_DETECTORS,
    ALERT_SEVERITIES,
    ALERT_STATES,
    AlertActionRow,
    AlertRow,
)
from trustfleet.store._rows import record_of
from trustfleet.store._session import SessionHandle, insert
from trustfleet.store.alert_records import AlertActionRecord, AlertQuery, AlertRecord

__all__ = ["MAX_EVIDENCE_BYTES", "AlertActionRepository", "AlertRepository"]

MAX_EVIDENCE_BYTES: Final = 8 * 1024
"""Bound on an alert's stored evidence (JSON)."""
_ALERTS = cast(sa.Table, AlertRow.__table__)
_ACTIONS = cast(sa.Table, AlertActionRow.__table__)


def _alert(row: Any) -> AlertRecord:
    return record_of(AlertRecord, row, evidence=dict(row.evidence or {}))


def _evidence(evidence: Mapping[str, Any]) -> dict[str, Any]:
    try:
        return check.json_object(evidence, max_bytes=MAX_EVIDENCE_BYTES)
    except InvalidInput:  # too large or not JSON: keep a marker, not lose the alert
        return {"truncated": True}


class AlertRepository:
    """Alerts, within one transaction. Get it as ``tx.alerts``."""

    def __init__(self, handle: SessionHandle) -> None:
        self._handle = handle

    def _conn(self) -> sa.Connection:
        return self._handle.session.connection()

    def add(
        self,
        *,
        device_id: str,
        kind: str,
        severity: str,
        detector: str,
        summary: str,
        evidence: Mapping[str, Any],
        at: datetime,
        now: datetime,
    ) -> AlertRecord:
        """Raise a new ``open`` alert from its first finding.

        Raises:
            NotFound: No such device.
            InvalidInput: A value is malformed.
        """
        row = AlertRow(
            device_id=device_id,
            kind=check.text(kind, name="kind", max_chars=64),
            severity=check.one_of(severity, ALERT_SEVERITIES, name="severity"),
            detector=check.one_of(detector, ALERT_DETECTORS, name="detector"),
            state="open", summary=(summary or "-")[:300], evidence=_evidence(evidence),
            findings=1, first_seen=check.aware(at, name="at"), last_seen=check.aware(at, name="at"),
            suppressed_until=None, updated_by=None, created_at=check.aware(now, name="now"),
            updated_at=now,
        )  # fmt: skip
        insert(
            self._handle.session, row,
            duplicate="alert exists", missing_reference=f"device {device_id!r} not found",
        )  # fmt: skip
        return _alert(row)

    def get(self, id: int) -> AlertRecord | None:
        """The alert with this id, or None."""
        row = self._conn().execute(select(_ALERTS).where(_ALERTS.c.id == id)).one_or_none()
        return None if row is None else _alert(row)

    def require(self, id: int) -> AlertRecord:
        """The alert with this id.

        Raises:
            NotFound: No such alert (``alert.not_found``).
        """
        found = self.get(id)
        if found is None:
            raise NotFound(
                f"alert {id} not found",
                hint="list alerts with 'trustfleet alerts list'",
                code="alert.not_found",
            )
        return found

    def latest(self, device_id: str, kind: str) -> AlertRecord | None:
        """The newest alert of a kind on a device, in any state, or None."""
        query = (
            select(_ALERTS)
            .where(_ALERTS.c.device_id == device_id, _ALERTS.c.kind == kind)
            .order_by(_ALERTS.c.id.desc())
            .limit(1)
        )
        row = self._conn().execute(query).one_or_none()
        return None if row is None else _alert(row)

    def join(
        self,
        current: AlertRecord,
        *,
        severity: str,
        summary: str,
        evidence: Mapping[str, Any],
        at: datetime,
        now: datetime,
    ) -> AlertRecord:
        """Add a finding to an alert (``current``, as just read in this transaction): count it,
        keep the highest severity and the latest detail. Returns the alert as updated."""
        values: dict[str, Any] = {"findings": current.findings + 1, "updated_at": now}
        if ALERT_SEVERITIES.index(severity) > ALERT_SEVERITIES.index(current.severity):
            values["severity"] = severity
        if at >= current.last_seen:
            values |= {"last_seen": at, "summary": (summary or "-")[:300]}
            values["evidence"] = _evidence(evidence)
        counted = {**values, "findings": _ALERTS.c.findings + 1}  # atomic in SQL
        statement = update(_ALERTS).where(_ALERTS.c.id == current.id).values(**counted)
        self._conn().execute(statement)
        return dataclasses.replace(current, **values)

    def set_state(
        self,
        id: int,
        state: str,
        *,
        by: str,
        now: datetime,
        suppressed_until: datetime | None = None,
    ) -> AlertRecord:
        """Change an alert's state, saying who did it (the caller checks the transition)."""
        self._conn().execute(
            update(_ALERTS)
            .where(_ALERTS.c.id == id)
            .values(
                state=check.one_of(state, ALERT_STATES, name="state"),
                updated_by=check.text(by, name="actor", max_chars=64),
                updated_at=check.aware(now, name="now"),
                suppressed_until=suppressed_until,
            )
        )
        return self.require(id)

    def page(
        self, query: AlertQuery, *, limit: int = 100, offset: int = 0
    ) -> builtins.list[AlertRecord]:
        """A page of alerts, most recently seen first.

        Raises:
            InvalidInput: The page is out of range.
        """
        limit, offset = check.page(limit=limit, offset=offset)
        statement = select(_ALERTS)
        for column, value in (
            (_ALERTS.c.state, query.state),
            (_ALERTS.c.device_id, query.device_id),
            (_ALERTS.c.kind, query.kind),
            (_ALERTS.c.severity, query.severity),
        ):
            if value is not None:
                statement = statement.where(column == value)
        statement = (
            statement.order_by(_ALERTS.c.last_seen.desc(), _ALERTS.c.id.desc())
            .limit(limit)
            .offset(offset)
        )
        return [_alert(row) for row in self._conn().execute(statement)]


class AlertActionRepository:
    """Actions of alerts, within one transaction. Get it as ``tx.alert_actions``."""

    def __init__(self, handle: SessionHandle) -> None:
        self._handle = handle

    def _conn(self) -> sa.Connection:
        return self._handle.session.connection()

    def add(
        self, *, alert_id: int, action: str, mode: str, state: str, now: datetime
    ) -> AlertActionRecord:
        """Record an action the playbook asked for.

        Raises:
            NotFound: No such alert.
            InvalidInput: A value is malformed.
        """
        row = AlertActionRow(
            alert_id=alert_id,
            action=check.one_of(action, ALERT_ACTIONS, name="action"),
            mode=check.one_of(mode, ACTION_MODES, name="mode"),
            state=check.one_of(state, ACTION_STATES, name="state"),
            decided_by=None, decided_at=None, result=None,
            created_at=check.aware(now, name="now"), updated_at=now,
        )  # fmt: skip
        insert(
            self._handle.session, row,
            duplicate="action exists", missing_reference=f"alert {alert_id} not found",
        )  # fmt: skip
        return record_of(AlertActionRecord, row)

    def get(self, id: int) -> AlertActionRecord | None:
        """The action with this id, or None."""
        row = self._conn().execute(select(_ACTIONS).where(_ACTIONS.c.id == id)).one_or_none()
        return None if row is None else record_of(AlertActionRecord, row)

    def require(self, id: int) -> AlertActionRecord:
        """The action with this id.

        Raises:
            NotFound: No such action (``alert.action.not_found``).
        """
        found = self.get(id)
        if found is None:
            raise NotFound(
                f"alert action {id} not found",
                hint="'trustfleet alerts show ALERT_ID' lists an alert's actions",
                code="alert.action.not_found",
            )
        return found

    def for_alert(self, alert_id: int) -> builtins.list[AlertActionRecord]:
        """An alert's actions in the order they were asked for."""
        query = select(_ACTIONS).where(_ACTIONS.c.alert_id == alert_id).order_by(_ACTIONS.c.id)
        return [record_of(AlertActionRecord, row) for row in self._conn().execute(query)]

    def transition(
        self,
        id: int,
        *,
        expect: str,
        state: str,
        now: datetime,
        by: str | None = None,
        result: str | None = None,
    ) -> bool:
        """Move an action from state ``expect`` to ``state``; whether it was in ``expect``.

        ``by`` given: it is recorded as the decider, with ``now``.
        """
        values: dict[str, Any] = {
            "state": check.one_of(state, ACTION_STATES, name="state"),
            "updated_at": check.aware(now, name="now"),
        }
        if by is not None:
            values |= {"decided_by": by[:64], "decided_at": now}
        if result is not None:
            values["result"] = result[:300]
        statement = (
            update(_ACTIONS).where(_ACTIONS.c.id == id, _ACTIONS.c.state == expect).values(**values)
        )
        outcome = self._conn().execute(statement)
        return bool(cast(sa.CursorResult[Any], outcome).rowcount)
