"""Verdict history and device quarantine: the part of ``tx.attestation`` about outcomes."""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy import delete, select

from trustfleet.errors import NotFound
from trustfleet.store import _validate as check
from trustfleet.store._models import AttestationResultRow, DeviceRow
from trustfleet.store._rows import record_of
from trustfleet.store._session import SessionHandle
from trustfleet.store.records import JSON, AttestationResultRecord, QuarantineRecord

__all__ = ["MAX_FINDINGS_BYTES", "VerdictsAndQuarantine", "core_table"]

MAX_FINDINGS_BYTES = 32 * 1024
"""Bound on the JSON size of one verdict's findings."""


def _result(row: Any) -> AttestationResultRecord:
    return record_of(AttestationResultRecord, row, ok=bool(row.ok), findings=tuple(row.findings))


class _Values:
    """Attribute access over inserted values (what ``_result`` reads)."""

    def __init__(self, **values: Any) -> None:
        self.__dict__.update(values)


def core_table(row_class: Any) -> sa.Table:
    """The Core table of a mapped row class."""
    return cast(sa.Table, row_class.__table__)


class VerdictsAndQuarantine:
    """Verdicts and quarantine, within one transaction (the base of ``tx.attestation``)."""

    def __init__(self, handle: SessionHandle) -> None:
        self._handle = handle

    @property
    def _session(self) -> Any:
        return self._handle.session

    # -- results ------------------------------------------------------------------------

    def add_result(
        self,
        *,
        device_id: str,
        challenge_id: str,
        verified_at: datetime,
        ok: bool,
        findings: Sequence[Mapping[str, JSON]],
        release: str | None,
        clock: tuple[int, int, int] | None,
    ) -> AttestationResultRecord:
        """Store a verdict.

        Args:
            device_id: The device.
            challenge_id: The challenge answered.
            verified_at: When (timezone-aware).
            ok: Whether it passed.
            findings: JSON objects, bounded in size.
            release: The measured release, if known.
            clock: ``(clock, reset_count, restart_count)`` of the quote, if known.
        """
        encoded = check.json_object({"f": list(findings)}, max_bytes=MAX_FINDINGS_BYTES)["f"]
        clock_ms, resets, restarts = clock if clock is not None else (None, None, None)
        values = {
            "device_id": device_id,
            "challenge_id": check.text(challenge_id, name="challenge id", max_chars=40),
            "verified_at": check.aware(verified_at, name="verified_at"),
            "ok": ok,
            "findings": encoded,
            "release": release[:32] if release else None,
            "reset_count": resets,
            "restart_count": restarts,
            "clock": clock_ms,
        }
        table = core_table(AttestationResultRow)
        result = self._session.connection().execute(table.insert(), values)
        return _result(_Values(id=int(result.inserted_primary_key[0]), **values))

    def results(self, device_id: str, *, limit: int = 20) -> builtins.list[AttestationResultRecord]:
        """A device's verdicts, newest first."""
        return self.results_page(device_id, limit=limit)

    def results_page(
        self, device_id: str, *, limit: int = 20, offset: int = 0
    ) -> builtins.list[AttestationResultRecord]:
        """A page of a device's verdicts, newest first (``offset``: skipped).

        Raises:
            InvalidInput: The page is out of range.
        """
        limit, offset = check.page(limit=limit, offset=offset)
        table = core_table(AttestationResultRow)
        query = (
            select(table)
            .where(table.c.device_id == device_id)
            .order_by(table.c.verified_at.desc(), table.c.id.desc())
            .limit(limit)
            .offset(offset)
        )
        return [_result(row) for row in self._session.connection().execute(query)]

    def result_for(self, challenge_id: str) -> AttestationResultRecord | None:
        """The verdict on a challenge, if there is one."""
        table = core_table(AttestationResultRow)
        query = select(table).where(table.c.challenge_id == challenge_id).limit(1)
        row = self._session.connection().execute(query).one_or_none()
        return None if row is None else _result(row)

    def last_passed(self, device_id: str) -> AttestationResultRecord | None:
        """A device's newest passing verdict (its clock info is the reference for the next)."""
        table = core_table(AttestationResultRow)
        query = (
            select(table)
            .where(table.c.device_id == device_id, table.c.ok.is_(True))
            .order_by(table.c.verified_at.desc(), table.c.id.desc())
            .limit(1)
        )
        row = self._session.connection().execute(query).one_or_none()
        return None if row is None else _result(row)

    def delete_results_before(self, cutoff: datetime) -> int:
        """Delete verdicts older than ``cutoff`` (retention); returns how many."""
        table = core_table(AttestationResultRow)
        statement = delete(table).where(table.c.verified_at < check.aware(cutoff, name="cutoff"))
        return int(self._session.connection().execute(statement).rowcount or 0)

    # -- quarantine ---------------------------------------------------------------------

    def quarantine(self, device_id: str) -> QuarantineRecord | None:
        """A device's quarantine, or None when it is not quarantined.

        Raises:
            NotFound: No such device.
        """
        row = self._session.get(DeviceRow, device_id)
        if row is None:
            raise NotFound(f"device {device_id!r} not found", code="store.device.not_found")
        if row.quarantined_at is None:
            return None
        return QuarantineRecord(
            device_id=row.id,
            at=row.quarantined_at,
            reason=row.quarantine_reason or "",
            by=row.quarantined_by or "",
            release=row.quarantine_release,
        )

    def set_quarantine(
        self, device_id: str, *, at: datetime, reason: str, by: str, release: str | None
    ) -> None:
        """Quarantine a device (the caller checked it was not).

        Raises:
            NotFound: No such device.
        """
        row = self._session.get(DeviceRow, device_id, with_for_update=True)
        if row is None:
            raise NotFound(f"device {device_id!r} not found", code="store.device.not_found")
        row.quarantined_at = check.aware(at, name="at")
        row.quarantine_reason = check.text(reason[:256], name="reason", max_chars=256)
        row.quarantined_by = check.text(by, name="by", max_chars=128)
        row.quarantine_release = release[:32] if release else None
        row.updated_at = row.quarantined_at
        self._session.flush()

    def clear_quarantine(self, device_id: str, *, now: datetime) -> None:
        """End a device's quarantine.

        Raises:
            NotFound: No such device.
        """
        row = self._session.get(DeviceRow, device_id, with_for_update=True)
        if row is None:
            raise NotFound(f"device {device_id!r} not found", code="store.device.not_found")
        row.quarantined_at = None
        row.quarantine_reason = row.quarantined_by = row.quarantine_release = None
        row.updated_at = check.aware(now, name="now")
        self._session.flush()

    def quarantined(self, *, limit: int = 1000, offset: int = 0) -> builtins.list[QuarantineRecord]:
        """Quarantined devices, ordered by id (``offset``: skipped)."""
        limit, offset = check.page(limit=limit, offset=offset)
        query = (
            select(DeviceRow)
            .where(DeviceRow.quarantined_at.is_not(None))
            .order_by(DeviceRow.id)
            .limit(limit)
            .offset(offset)
        )
        return [
            QuarantineRecord(
                device_id=row.id,
                at=row.quarantined_at,
                reason=row.quarantine_reason or "",
                by=row.quarantined_by or "",
                release=row.quarantine_release,
            )
            for row in self._session.scalars(query)
        ]
