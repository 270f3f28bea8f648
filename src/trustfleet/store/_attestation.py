"""Repository of remote attestation: AKs, AK enrollments, challenges, verdicts, quarantine."""

from __future__ import annotations

import builtins
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update

from trustfleet.store import _validate as check
from trustfleet.store._attestation_verdicts import VerdictsAndQuarantine, core_table
from trustfleet.store._models import (
    AkEnrollmentRow,
    AttestationChallengeRow,
    AttestationKeyRow,
    DeviceRow,
)
from trustfleet.store._rows import record_of
from trustfleet.store._session import insert
from trustfleet.store.records import (
    CHALLENGE_OUTCOMES,
    CHALLENGE_TRIGGERS,
    AkEnrollmentRecord,
    AttestationKeyRecord,
    ChallengeOutcome,
    ChallengeRecord,
)

__all__ = ["AttestationRepository"]


def _key_bytes(row: Any) -> dict[str, bytes]:
    """The binary columns an AK and an AK enrollment share, as ``bytes``."""
    return {
        "ak_public": bytes(row.ak_public),
        "ek_public": bytes(row.ek_public),
        "ek_certificate": bytes(row.ek_certificate),
    }


def _key(row: Any) -> AttestationKeyRecord:
    return record_of(AttestationKeyRecord, row, **_key_bytes(row))


def _enrollment(row: AkEnrollmentRow) -> AkEnrollmentRecord:
    return record_of(AkEnrollmentRecord, row, **_key_bytes(row))


def _challenge(row: Any) -> ChallengeRecord:
    return record_of(
        ChallengeRecord, row, nonce=bytes(row.nonce), pcrs=tuple(int(p) for p in row.pcrs)
    )


class AttestationRepository(VerdictsAndQuarantine):
    """Attestation state, within one transaction. Get it as ``tx.attestation``."""

    # -- AK enrollment and keys ---------------------------------------------------------

    def add_enrollment(self, record: AkEnrollmentRecord) -> None:
        """Store a pending AK enrollment (its ``used_at`` is ignored: a new one is open).

        Raises:
            NotFound: The device does not exist.
        """
        row = AkEnrollmentRow(
            id=check.text(record.id, name="enrollment id", max_chars=40),
            device_id=record.device_id,
            secret_sha256=check.sha256_hex(record.secret_sha256),
            ak_public=record.ak_public,
            ak_public_pem=check.text(record.ak_public_pem, name="AK PEM", max_chars=1024),
            ak_name=check.text(record.ak_name, name="AK name", max_chars=160),
            ek_public=record.ek_public,
            ek_certificate=record.ek_certificate,
            created_at=check.aware(record.created_at, name="created_at"),
            expires_at=check.aware(record.expires_at, name="expires_at"),
            used_at=None,
        )
        insert(
            self._session,
            row,
            duplicate="this AK enrollment id exists",
            missing_reference=f"device {record.device_id!r} not found",
        )

    def get_enrollment(self, id: str) -> AkEnrollmentRecord | None:
        """The AK enrollment with this id, or None."""
        row = self._session.get(AkEnrollmentRow, id)
        return None if row is None else _enrollment(row)

    def use_enrollment(self, id: str, *, now: datetime) -> bool:
        """Mark an enrollment used if it was not (one conditional UPDATE); True if this call did."""
        table = core_table(AkEnrollmentRow)
        statement = (
            update(table)
            .where(table.c.id == id, table.c.used_at.is_(None))
            .values(used_at=check.aware(now, name="now"))
        )
        result = self._session.connection().execute(statement)
        return bool(result.rowcount == 1)

    def put_key(self, record: AttestationKeyRecord) -> None:
        """Store a device's AK, replacing the one it had."""
        table = core_table(AttestationKeyRow)
        conn = self._session.connection()
        conn.execute(delete(table).where(table.c.device_id == record.device_id))
        conn.execute(
            table.insert(),
            {
                "device_id": record.device_id,
                "ak_public": record.ak_public,
                "ak_public_pem": record.ak_public_pem,
                "ak_name": record.ak_name,
                "ek_public": record.ek_public,
                "ek_certificate": record.ek_certificate,
                "activated_at": check.aware(record.activated_at, name="activated_at"),
            },
        )

    def get_key(self, device_id: str) -> AttestationKeyRecord | None:
        """The AK of a device, or None."""
        table = core_table(AttestationKeyRow)
        row = (
            self._session.connection()
            .execute(select(table).where(table.c.device_id == device_id))
            .one_or_none()
        )
        return None if row is None else _key(row)

    def devices_for_ek(self, ek_public: bytes) -> builtins.list[str]:
        """The devices whose AK was bound to this EK (one TPM), by id."""
        table = core_table(AttestationKeyRow)
        rows = self._session.connection().execute(
            select(table.c.device_id)
            .where(table.c.ek_public == ek_public)
            .order_by(table.c.device_id)
            .limit(100)
        )
        return [str(row.device_id) for row in rows]

    def last_challenges(self, *, limit: int = 1000, offset: int = 0) -> dict[str, datetime | None]:
        """Enrolled devices with an AK and the issue time of their newest challenge.

        Args:
            limit: Most devices (1 to 1000), ordered by id.
            offset: Devices to skip.
        """
        limit, offset = check.page(limit=limit, offset=offset)
        keys, ch = core_table(AttestationKeyRow), core_table(AttestationChallengeRow)
        dev = DeviceRow
        newest = (
            select(ch.c.device_id, func.max(ch.c.issued_at).label("last"))
            .group_by(ch.c.device_id)
            .subquery()
        )
        query = (
            select(keys.c.device_id, newest.c.last)
            .join(dev, dev.id == keys.c.device_id)
            .outerjoin(newest, newest.c.device_id == keys.c.device_id)
            .where(dev.state == "enrolled")
            .order_by(keys.c.device_id)
            .limit(limit)
            .offset(offset)
        )
        rows = self._session.connection().execute(query)
        return {device_id: last for device_id, last in rows}  # noqa: C416  # Row pairs

    # -- challenges ---------------------------------------------------------------------

    def add_challenge(self, record: ChallengeRecord) -> None:
        """Store an issued challenge.

        Raises:
            NotFound: The device does not exist.
        """
        row = AttestationChallengeRow(
            id=check.text(record.id, name="challenge id", max_chars=40),
            device_id=record.device_id,
            nonce=record.nonce,
            pcrs=list(record.pcrs),
            trigger=check.one_of(record.trigger, CHALLENGE_TRIGGERS, name="trigger"),
            issued_at=check.aware(record.issued_at, name="issued_at"),
            expires_at=check.aware(record.expires_at, name="expires_at"),
            used_at=None,
            outcome=None,
        )
        insert(
            self._session,
            row,
            duplicate="this challenge id exists",
            missing_reference=f"device {record.device_id!r} not found",
        )

    def get_challenge(self, id: str) -> ChallengeRecord | None:
        """The challenge with this id, or None."""
        table = core_table(AttestationChallengeRow)
        row = (
            self._session.connection().execute(select(table).where(table.c.id == id)).one_or_none()
        )
        return None if row is None else _challenge(row)

    def use_challenge(self, id: str, *, now: datetime) -> bool:
        """Take an open challenge for verification (single use: one conditional UPDATE).

        Returns:
            True if this call took it; False if it was already used or closed as missed.
        """
        table = core_table(AttestationChallengeRow)
        statement = (
            update(table)
            .where(table.c.id == id, table.c.used_at.is_(None), table.c.outcome.is_(None))
            .values(used_at=check.aware(now, name="now"))
        )
        return bool(self._session.connection().execute(statement).rowcount == 1)

    def close_challenge(self, id: str, outcome: ChallengeOutcome) -> None:
        """Record how a challenge ended."""
        table = core_table(AttestationChallengeRow)
        check.one_of(outcome, CHALLENGE_OUTCOMES, name="outcome")
        self._session.connection().execute(
            update(table).where(table.c.id == id).values(outcome=outcome)
        )

    def miss_expired(self, *, now: datetime, limit: int = 1000) -> builtins.list[ChallengeRecord]:
        """Close unanswered challenges whose time is up as ``missed``; returns them."""
        limit, _ = check.page(limit=limit)
        table = core_table(AttestationChallengeRow)
        now = check.aware(now, name="now")
        query = (
            select(table)
            .where(table.c.outcome.is_(None), table.c.used_at.is_(None), table.c.expires_at < now)
            .order_by(table.c.expires_at)
            .limit(limit)
        )
        conn = self._session.connection()
        missed = []
        for row in conn.execute(query).all():
            closed = conn.execute(
                update(table)
                .where(table.c.id == row.id, table.c.outcome.is_(None), table.c.used_at.is_(None))
                .values(outcome="missed")
            )
            if closed.rowcount == 1:
                missed.append(_challenge(row))
        return missed

    def recent_outcomes(self, device_id: str, *, limit: int) -> builtins.list[str | None]:
        """The outcomes of a device's newest challenges, newest first (None: still open)."""
        limit, _ = check.page(limit=limit)
        table = core_table(AttestationChallengeRow)
        query = (
            select(table.c.outcome)
            .where(table.c.device_id == device_id)
            .order_by(table.c.issued_at.desc())
            .limit(limit)
        )
        return [outcome for (outcome,) in self._session.connection().execute(query)]

    def delete_challenges_before(self, cutoff: datetime) -> int:
        """Delete challenges issued before ``cutoff`` (retention); returns how many."""
        table = core_table(AttestationChallengeRow)
        statement = delete(table).where(table.c.issued_at < check.aware(cutoff, name="cutoff"))
        return int(self._session.connection().execute(statement).rowcount or 0)
