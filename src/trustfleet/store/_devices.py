"""Repository of devices."""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import cast

import sqlalchemy as sa
from sqlalchemy import bindparam, func, select, update

from trustfleet.errors import NotFound
from trustfleet.store import _validate as check
from trustfleet.store._models import DeviceRow
from trustfleet.store._rows import record_of
from trustfleet.store._session import SessionHandle, insert
from trustfleet.store.records import DEVICE_PROTOCOLS, DEVICE_STATES, DeviceRecord, DeviceState

__all__ = ["DeviceRepository"]


def _record(row: DeviceRow) -> DeviceRecord:
    return record_of(DeviceRecord, row)


_BY_ID = select(DeviceRow.__table__).where(DeviceRow.__table__.c.id == bindparam("id"))


class DeviceRepository:
    """Devices, within one transaction. Get it as ``tx.devices``."""

    def __init__(self, handle: SessionHandle) -> None:
        self._handle = handle

    def add(
        self,
        *,
        id: str,
        model: str,
        state: DeviceState = "manufactured",
        protocol: str = "mqtt",
        now: datetime,
    ) -> DeviceRecord:
        """Register a device.

        Args:
            id: The device identifier (1 to 64 characters).
            model: The hardware model (1 to 128 characters).
            state: The initial state.
            protocol: ``mqtt`` or ``lwm2m``.
            now: The current time (timezone-aware); becomes ``created_at`` and ``updated_at``.

        Returns:
            The stored device.

        Raises:
            Conflict: A device with this id exists.
            InvalidInput: A value is malformed.
        """
        now = check.aware(now, name="now")
        row = DeviceRow(
            id=check.text(id, name="device id", max_chars=64),
            model=check.text(model, name="model", max_chars=128),
            state=check.one_of(state, DEVICE_STATES, name="state"),
            protocol=check.one_of(protocol, DEVICE_PROTOCOLS, name="protocol"),
            created_at=now,
            updated_at=now,
        )
        insert(self._handle.session, row, duplicate=f"device {id!r} already exists")
        return _record(row)

    def get(self, id: str) -> DeviceRecord | None:
        """The device with this id, or None."""
        # A prebuilt Core statement: this lookup runs on every enrollment.
        row = self._handle.session.connection().execute(_BY_ID, {"id": id}).one_or_none()
        return None if row is None else _record(row)  # type: ignore[arg-type]  # Row has the same attributes

    def require(self, id: str) -> DeviceRecord:
        """The device with this id.

        Raises:
            NotFound: There is none.
        """
        record = self.get(id)
        if record is None:
            raise _not_found(id)
        return record

    def list(
        self, *, limit: int = 100, offset: int = 0, state: DeviceState | None = None
    ) -> builtins.list[DeviceRecord]:
        """Devices ordered by id, optionally only those in one state.

        Args:
            limit: Most devices to return (1 to 1000).
            offset: Devices to skip.
            state: Only devices in this state.

        Raises:
            InvalidInput: The page is out of range.
        """
        limit, offset = check.page(limit=limit, offset=offset)
        query = select(DeviceRow).order_by(DeviceRow.id).limit(limit).offset(offset)
        if state is not None:
            query = query.where(DeviceRow.state == state)
        return [_record(row) for row in self._handle.session.scalars(query)]

    def count(self, *, state: DeviceState | None = None) -> int:
        """How many devices there are, optionally only in one state."""
        query = select(func.count()).select_from(DeviceRow)
        if state is not None:
            query = query.where(DeviceRow.state == state)
        return self._handle.session.scalar(query) or 0

    def set_state(self, id: str, state: DeviceState, *, now: datetime) -> DeviceRecord:
        """Move a device to another state (the services layer decides which moves are allowed).

        Args:
            id: The device.
            state: The new state.
            now: The current time (timezone-aware); becomes ``updated_at``.

        Returns:
            The updated device.

        Raises:
            NotFound: There is no such device.
            InvalidInput: The state is unknown.
        """
        check.one_of(state, DEVICE_STATES, name="state")
        now = check.aware(now, name="now")
        row = self._locked(id)
        row.state = state
        row.updated_at = now
        self._handle.session.flush()
        return _record(row)

    def set_firmware_version(self, id: str, version: str, *, now: datetime) -> DeviceRecord:
        """Record the release a device reports it committed.

        Raises:
            NotFound: There is no such device.
            InvalidInput: The version is malformed.
        """
        now = check.aware(now, name="now")
        row = self._locked(id)
        row.firmware_version = check.text(version, name="firmware version", max_chars=32)
        row.updated_at = now
        self._handle.session.flush()
        return _record(row)

    def set_protocol(self, id: str, protocol: str, *, now: datetime) -> DeviceRecord:
        """Set how a device talks to the service (``mqtt`` or ``lwm2m``).

        Raises:
            NotFound: There is no such device.
            InvalidInput: The protocol is unknown.
        """
        check.one_of(protocol, DEVICE_PROTOCOLS, name="protocol")
        now = check.aware(now, name="now")
        row = self._locked(id)
        row.protocol = protocol
        row.updated_at = now
        self._handle.session.flush()
        return _record(row)

    def _locked(self, id: str) -> DeviceRow:
        row = self._handle.session.get(DeviceRow, id, with_for_update=True)
        if row is None:
            raise _not_found(id)
        return row

    def states(self, ids: Iterable[str]) -> dict[str, DeviceState]:
        """The state of each listed device that exists (one query; unknown ids are left out).

        Args:
            ids: Device ids (at most :data:`~trustfleet.store.MAX_LIST_LIMIT` distinct).

        Raises:
            InvalidInput: Too many ids.
        """
        wanted = sorted(set(ids))
        check.page(limit=max(1, len(wanted)))
        if not wanted:
            return {}
        query = select(DeviceRow.id, DeviceRow.state).where(DeviceRow.id.in_(wanted))
        rows = self._handle.session.execute(query)
        return {id_: cast(DeviceState, state) for id_, state in rows}

    def protocols(self, ids: Iterable[str]) -> dict[str, str]:
        """The protocol of each listed device that exists (one query; unknown ids left out).

        Raises:
            InvalidInput: Too many ids.
        """
        wanted = sorted(set(ids))
        check.page(limit=max(1, len(wanted)))
        if not wanted:
            return {}
        query = select(DeviceRow.id, DeviceRow.protocol).where(DeviceRow.id.in_(wanted))
        return {str(id_): str(protocol) for id_, protocol in self._handle.session.execute(query)}

    def mark_seen(self, seen: Mapping[str, datetime]) -> None:
        """Move each device's ``last_seen_at`` forward to the given time (never backward).

        Args:
            seen: Device id to the time it was last heard from (timezone-aware).
        """
        if not seen:
            return
        table = cast(sa.Table, DeviceRow.__table__)
        statement = (
            update(table)
            .where(table.c.id == bindparam("b_id"))
            .where((table.c.last_seen_at.is_(None)) | (table.c.last_seen_at < bindparam("b_at")))
            .values(last_seen_at=bindparam("b_at"))
        )
        params = [
            {"b_id": id_, "b_at": check.aware(at, name="last seen")} for id_, at in seen.items()
        ]
        self._handle.session.connection().execute(statement, params)


def _not_found(id: str) -> NotFound:
    return NotFound(f"device {id!r} not found", code="store.device.not_found")
