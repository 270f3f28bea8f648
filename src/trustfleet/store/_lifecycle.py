"""Repositories of the lifecycle tables: the CA registry (``tx.cas``), decommissions
(``tx.decommissions``) and expiry notices (``tx.expiry_notices``)."""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from sqlalchemy import select

from trustfleet.errors import Conflict, InvalidInput, NotFound
from trustfleet.store import _validate as check
from trustfleet.store._lifecycle_models import CaRow, DecommissionRow, ExpiryNoticeRow
from trustfleet.store._rows import record_of
from trustfleet.store._session import SessionHandle, insert
from trustfleet.store.lifecycle_records import (
    CA_KIND_VALUES,
    CA_STATE_VALUES,
    DECOMMISSION_STATE_VALUES,
    EXPIRY_LEVEL_VALUES,
    CaRecord,
    CaState,
    DecommissionRecord,
    DecommissionState,
    ExpiryNoticeRecord,
)

__all__ = [
    "MAX_WIPE_EVIDENCE_BYTES",
    "CaRepository",
    "DecommissionRepository",
    "ExpiryNoticeRepository",
]

MAX_WIPE_EVIDENCE_BYTES: Final = 16 * 1024
"""Bound on one stored wipe evidence document."""

# Allowed moves of a CA's state; ``active`` may also be set directly on a new CA.
_CA_MOVES: Final[dict[str, tuple[str, ...]]] = {
    "standby": ("active", "retired"),
    "active": ("retiring",),
    "retiring": ("retired", "active"),
    "retired": (),
}


def _ca(row: CaRow) -> CaRecord:
    return record_of(CaRecord, row)


def _decommission(row: DecommissionRow) -> DecommissionRecord:
    return record_of(DecommissionRecord, row)


class CaRepository:
    """Every CA of the home and its state. Get it as ``tx.cas``."""

    def __init__(self, handle: SessionHandle) -> None:
        self._handle = handle

    def get(self, name: str) -> CaRecord | None:
        """The CA of that name, or None."""
        row = self._handle.session.get(CaRow, name)
        return None if row is None else _ca(row)

    def require(self, name: str) -> CaRecord:
        """The CA of that name.

        Raises:
            NotFound: No CA of that name.
        """
        record = self.get(name)
        if record is None:
            raise NotFound(f"no CA named '{name}'", hint="see 'trustfleet ca status'")
        return record

    def list(
        self, *, kind: str | None = None, states: tuple[str, ...] | None = None
    ) -> builtins.list[CaRecord]:
        """The CAs, oldest first, of one kind and in some states if asked."""
        query = select(CaRow).order_by(CaRow.created_at, CaRow.name)
        if kind is not None:
            query = query.where(CaRow.kind == check.one_of(kind, CA_KIND_VALUES, name="kind"))
        if states is not None:
            query = query.where(CaRow.state.in_(states))
        return [_ca(row) for row in self._handle.session.scalars(query)]

    def trusted(self, kind: str) -> builtins.list[CaRecord]:
        """The CAs of a kind whose certificates are accepted (every state but ``retired``)."""
        return self.list(kind=kind, states=("active", "standby", "retiring"))

    def active(self, kind: str) -> CaRecord:
        """The one CA of a kind that issues now.

        Raises:
            NotFound: None is active (a home in the middle of a broken rollover).
        """
        rows = self.list(kind=kind, states=("active",))
        if not rows:
            raise NotFound(f"no active {kind} CA", hint="see 'trustfleet ca status'")
        return rows[-1]

    def add(self, *, name: str, kind: str, state: CaState, now: datetime) -> CaRecord:
        """Register a new CA (``standby``, or ``active`` for a home's first CAs).

        Raises:
            Conflict: A CA of that name exists.
            InvalidInput: A value is malformed.
        """
        if state not in ("standby", "active"):
            raise InvalidInput("a new CA starts standby or active", code="store.bad_value")
        row = CaRow(
            name=check.text(name, name="name", max_chars=64),
            kind=check.one_of(kind, CA_KIND_VALUES, name="kind"),
            state=state,
            created_at=check.aware(now, name="now"),
            activated_at=now if state == "active" else None,
            retired_at=None,
        )
        insert(self._handle.session, row, duplicate=f"CA '{name}' exists")
        return _ca(row)

    def set_state(self, name: str, state: CaState, *, now: datetime) -> CaRecord:
        """Move a CA to ``state`` (standby → active|retired, active → retiring, retiring →
        retired|active).

        Raises:
            NotFound: No CA of that name.
            Conflict: The move is not allowed from its current state.
        """
        check.one_of(state, CA_STATE_VALUES, name="state")
        row = self._handle.session.get(CaRow, name, with_for_update=True)
        if row is None:
            raise NotFound(f"no CA named '{name}'", hint="see 'trustfleet ca status'")
        if state not in _CA_MOVES[row.state]:
            raise Conflict(
                f"CA '{name}' is {row.state}; it cannot become {state}",
                hint="see 'trustfleet ca status'",
                code="ca.state",
            )
        row.state = state
        if state == "active":
            row.activated_at = check.aware(now, name="now")
        if state == "retired":
            row.retired_at = check.aware(now, name="now")
        self._handle.session.flush()
        return _ca(row)


class DecommissionRepository:
    """Devices asked to wipe themselves. Get it as ``tx.decommissions``."""

    def __init__(self, handle: SessionHandle) -> None:
        self._handle = handle

    def get(self, device_id: str) -> DecommissionRecord | None:
        """The device's decommission, or None."""
        row = self._handle.session.get(DecommissionRow, device_id)
        return None if row is None else _decommission(row)

    def add(
        self, *, device_id: str, nonce: str, requested_by: str, deadline: datetime, now: datetime
    ) -> DecommissionRecord:
        """Record a pending decommission with the server's nonce.

        Raises:
            Conflict: The device already has one.
            NotFound: No such device.
            InvalidInput: A value is malformed.
        """
        row = DecommissionRow(
            device_id=device_id,
            state="pending",
            nonce=check.text(nonce, name="nonce", max_chars=64),
            requested_by=check.text(requested_by, name="requested_by", max_chars=64),
            requested_at=check.aware(now, name="now"),
            deadline=check.aware(deadline, name="deadline"),
            evidence=None,
            reason=None,
            completed_at=None,
        )
        insert(
            self._handle.session, row,
            duplicate=f"device '{device_id}' is already being decommissioned",
            missing_reference=f"device '{device_id}' not found",
        )  # fmt: skip
        return _decommission(row)

    def complete(
        self,
        device_id: str,
        *,
        state: DecommissionState,
        evidence: Mapping[str, Any] | None,
        reason: str | None,
        now: datetime,
    ) -> DecommissionRecord:
        """End a pending decommission as ``verified`` or ``unverified``.

        Raises:
            NotFound: No decommission of that device.
            Conflict: It is not pending any more.
            InvalidInput: A value is malformed or the evidence too large.
        """
        if state not in ("verified", "unverified"):
            raise InvalidInput("a decommission ends verified or unverified", code="store.bad_value")
        check.one_of(state, DECOMMISSION_STATE_VALUES, name="state")
        row = self._handle.session.get(DecommissionRow, device_id, with_for_update=True)
        if row is None:
            raise NotFound(f"device '{device_id}' is not being decommissioned")
        if row.state != "pending":
            raise Conflict(
                f"the decommission of '{device_id}' is already {row.state}",
                code="decommission.done",
            )
        row.state = state
        row.evidence = (
            None
            if evidence is None
            else check.json_object(evidence, max_bytes=MAX_WIPE_EVIDENCE_BYTES)
        )
        row.reason = None if reason is None else check.text(reason, name="reason", max_chars=300)
        row.completed_at = check.aware(now, name="now")
        self._handle.session.flush()
        return _decommission(row)

    def overdue(self, *, now: datetime, limit: int = 100) -> builtins.list[DecommissionRecord]:
        """Pending decommissions past their deadline, the oldest first."""
        limit, _ = check.page(limit=limit)
        query = (
            select(DecommissionRow)
            .where(DecommissionRow.state == "pending", DecommissionRow.deadline <= now)
            .order_by(DecommissionRow.deadline)
            .limit(limit)
        )
        return [_decommission(row) for row in self._handle.session.scalars(query)]

    def list(
        self, *, state: str | None = None, limit: int = 100, offset: int = 0
    ) -> builtins.list[DecommissionRecord]:
        """Decommissions, the newest request first, in one state if asked."""
        limit, offset = check.page(limit=limit, offset=offset)
        query = select(DecommissionRow).order_by(DecommissionRow.requested_at.desc())
        if state is not None:
            state = check.one_of(state, DECOMMISSION_STATE_VALUES, name="state")
            query = query.where(DecommissionRow.state == state)
        rows = self._handle.session.scalars(query.limit(limit).offset(offset))
        return [_decommission(row) for row in rows]


class ExpiryNoticeRepository:
    """The last expiry warning raised per subject. Get it as ``tx.expiry_notices``."""

    def __init__(self, handle: SessionHandle) -> None:
        self._handle = handle

    def get(self, subject: str) -> ExpiryNoticeRecord | None:
        """The last notice for ``subject``, or None."""
        row = self._handle.session.get(ExpiryNoticeRow, subject)
        return None if row is None else record_of(ExpiryNoticeRecord, row)

    def put(
        self, *, subject: str, not_after: datetime, level: str, now: datetime
    ) -> ExpiryNoticeRecord:
        """Record that ``level`` was raised for ``subject`` (replacing the previous notice)."""
        check.one_of(level, EXPIRY_LEVEL_VALUES, name="level")
        row = self._handle.session.get(ExpiryNoticeRow, subject, with_for_update=True)
        if row is None:
            row = ExpiryNoticeRow(subject=check.text(subject, name="subject", max_chars=128))
            self._handle.session.add(row)
        row.not_after = check.aware(not_after, name="not_after")
        row.level = level
        row.raised_at = check.aware(now, name="now")
        self._handle.session.flush()
        return record_of(ExpiryNoticeRecord, row)
