"""Repository of the commands sent to devices and their results (table ``device_commands``)."""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final, cast

import sqlalchemy as sa
from sqlalchemy import select, update

from trustfleet.store import _validate as check
from trustfleet.store._operator_models import DeviceCommandRow
from trustfleet.store._rows import record_of
from trustfleet.store._session import SessionHandle, insert
from trustfleet.store.command_records import DeviceCommandRecord
from trustfleet.store.records import JSON

__all__ = ["MAX_COMMAND_RESULT_BYTES", "CommandRepository", "check_command_result"]

MAX_COMMAND_RESULT_BYTES: Final = 16 * 1024
"""Bound on the JSON size of a stored result (the ingest's largest MQTT payload)."""
_TABLE = cast(sa.Table, DeviceCommandRow.__table__)


def check_command_result(result: Mapping[str, Any]) -> dict[str, Any]:
    """A device's result exactly as :meth:`CommandRepository.answer` stores it.

    The ingest verifier calls this before a message joins a batch, so a result the store would
    refuse is refused alone.

    Raises:
        InvalidInput: Not a JSON object or over :data:`MAX_COMMAND_RESULT_BYTES` encoded.
    """
    return check.json_object(result, max_bytes=MAX_COMMAND_RESULT_BYTES)


def _record(row: Any) -> DeviceCommandRecord:
    return record_of(DeviceCommandRecord, row, ok=None if row.ok is None else bool(row.ok))


class CommandRepository:
    """Device commands, within one transaction. Get it as ``tx.commands``."""

    def __init__(self, handle: SessionHandle) -> None:
        self._handle = handle

    def add(
        self,
        *,
        id: str,
        device_id: str,
        name: str,
        args: Mapping[str, JSON],
        actor: str,
        now: datetime,
    ) -> DeviceCommandRecord:
        """Record a command about to be sent (state ``sent``).

        Raises:
            Conflict: A command with this id exists.
            NotFound: No such device.
            InvalidInput: A value is malformed.
        """
        row = DeviceCommandRow(
            id=check.text(id, name="command id", max_chars=64),
            device_id=device_id,
            name=check.text(name, name="command name", max_chars=32),
            args=check.json_object(args, max_bytes=MAX_COMMAND_RESULT_BYTES),
            actor=check.text(actor, name="actor", max_chars=128),
            state="sent",
            sent_at=check.aware(now, name="now"),
        )
        insert(
            self._handle.session, row,
            duplicate=f"command {id!r} already exists",
            missing_reference=f"device {device_id!r} not found",
        )  # fmt: skip
        return _record(row)

    def get(self, id: str) -> DeviceCommandRecord | None:
        """The command with this id, or None."""
        row = (
            self._handle.session.connection()
            .execute(select(_TABLE).where(_TABLE.c.id == id))
            .one_or_none()
        )
        return None if row is None else _record(row)

    def page_for_device(
        self, device_id: str, *, limit: int = 100, offset: int = 0
    ) -> builtins.list[DeviceCommandRecord]:
        """A page of a device's commands, newest first.

        Raises:
            InvalidInput: The page is out of range.
        """
        limit, offset = check.page(limit=limit, offset=offset)
        query = (
            select(_TABLE)
            .where(_TABLE.c.device_id == device_id)
            .order_by(_TABLE.c.sent_at.desc(), _TABLE.c.id.desc())
            .limit(limit)
            .offset(offset)
        )
        return [_record(row) for row in self._handle.session.connection().execute(query)]

    def mark_failed(self, id: str, *, reason: str) -> bool:
        """Mark a ``sent`` command ``failed`` (it could not be published); whether one was."""
        statement = (
            update(_TABLE)
            .where(_TABLE.c.id == id, _TABLE.c.state == "sent")
            .values(state="failed", result={"error": reason[:512]})
        )
        result = self._handle.session.connection().execute(statement)
        return bool(cast(sa.CursorResult[Any], result).rowcount)

    def answer(
        self,
        id: str,
        *,
        device_id: str,
        ok: bool,
        result: Mapping[str, JSON],
        now: datetime,
    ) -> bool:
        """Store a device's answer to a ``sent`` command of its own; whether one was stored.

        A command of another device, an unknown id or one already answered is left as it was
        (a device cannot answer another's command, nor answer twice).

        Raises:
            InvalidInput: The result is not a JSON object or is too large.
        """
        body = check_command_result(result)
        statement = (
            update(_TABLE)
            .where(_TABLE.c.id == id, _TABLE.c.device_id == device_id, _TABLE.c.state == "sent")
            .values(state="answered", ok=ok, result=body, answered_at=check.aware(now, name="now"))
        )
        updated = self._handle.session.connection().execute(statement)
        return bool(cast(sa.CursorResult[Any], updated).rowcount)
