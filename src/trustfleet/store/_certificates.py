"""Repository of certificates."""

from __future__ import annotations

import builtins
from datetime import datetime

from sqlalchemy import bindparam, func, select

from trustfleet.errors import Conflict, InvalidInput, NotFound
from trustfleet.store import _validate as check
from trustfleet.store._models import CertificateRow
from trustfleet.store._rows import record_of
from trustfleet.store._session import SessionHandle, insert
from trustfleet.store.records import (
    CERTIFICATE_KINDS,
    CERTIFICATE_STATUSES,
    CertificateKind,
    CertificateRecord,
    CertificateStatus,
)

__all__ = ["CertificateRepository"]


def _record(row: CertificateRow) -> CertificateRecord:
    return record_of(CertificateRecord, row, der=bytes(row.der))


_BY_SHA256 = select(CertificateRow.__table__).where(
    CertificateRow.__table__.c.sha256 == bindparam("sha256")
)


class CertificateRepository:
    """Certificates, within one transaction. Get it as ``tx.certificates``."""

    def __init__(self, handle: SessionHandle) -> None:
        self._handle = handle

    def add(
        self,
        *,
        issuer: str,
        serial: str,
        kind: CertificateKind,
        device_id: str | None,
        subject: str,
        not_before: datetime,
        not_after: datetime,
        sha256: str,
        der: bytes,
        now: datetime,
    ) -> CertificateRecord:
        """Store an issued certificate (status ``valid``).

        Args:
            issuer: Name of the issuing CA (1 to 64 characters).
            serial: Serial as lowercase hex without leading zeros (``format(n, "x")``).
            kind: ``ca``, ``server``, ``idevid`` or ``ldevid``.
            device_id: The device it belongs to, or None.
            subject: The subject DN as an RFC 4514 string.
            not_before: Start of validity (timezone-aware).
            not_after: End of validity (timezone-aware, not before ``not_before``).
            sha256: SHA-256 fingerprint of ``der`` as 64 lowercase hex digits.
            der: The DER-encoded certificate.
            now: The current time (timezone-aware); becomes ``created_at``.

        Returns:
            The stored certificate.

        Raises:
            Conflict: The issuer already has this serial, or the fingerprint is stored.
            NotFound: ``device_id`` names no device.
            InvalidInput: A value is malformed.
        """
        not_before = check.aware(not_before, name="not_before")
        not_after = check.aware(not_after, name="not_after")
        if not_after < not_before:
            raise InvalidInput("not_after is before not_before", code="store.bad_validity")
        if not der:
            raise InvalidInput("der is empty", code="store.empty_der")
        row = CertificateRow(
            issuer=check.text(issuer, name="issuer", max_chars=64),
            serial=check.serial(serial),
            kind=check.one_of(kind, CERTIFICATE_KINDS, name="kind"),
            device_id=device_id,
            subject=check.text(subject, name="subject", max_chars=1024),
            not_before=not_before,
            not_after=not_after,
            sha256=check.sha256_hex(sha256),
            der=bytes(der),
            status="valid",
            revoked_at=None,
            revocation_reason=None,
            created_at=check.aware(now, name="now"),
        )
        insert(
            self._handle.session,
            row,
            duplicate=(
                f"certificate {serial!r} of issuer {issuer!r} or with fingerprint "
                f"{sha256[:16]}… already exists"
            ),
            missing_reference=f"device {device_id!r} not found",
        )
        return _record(row)

    def get(self, issuer: str, serial: str) -> CertificateRecord | None:
        """The certificate with this issuer and serial, or None."""
        row = self._row(issuer, serial, for_update=False)
        return None if row is None else _record(row)

    def require(self, issuer: str, serial: str) -> CertificateRecord:
        """The certificate with this issuer and serial.

        Raises:
            NotFound: There is none.
        """
        record = self.get(issuer, serial)
        if record is None:
            raise _not_found(issuer, serial)
        return record

    def get_by_sha256(self, sha256: str) -> CertificateRecord | None:
        """The certificate with this fingerprint (lowercase hex), or None."""
        # A prebuilt Core statement: this lookup authenticates every enrollment.
        row = (
            self._handle.session.connection().execute(_BY_SHA256, {"sha256": sha256}).one_or_none()
        )
        return None if row is None else _record(row)  # type: ignore[arg-type]  # Row has the same attributes

    def list_for_device(self, device_id: str) -> builtins.list[CertificateRecord]:
        """A device's certificates, oldest first."""
        query = (
            select(CertificateRow)
            .where(CertificateRow.device_id == device_id)
            .order_by(CertificateRow.id)
        )
        return [_record(row) for row in self._handle.session.scalars(query)]

    def page_for_device(
        self, device_id: str, *, limit: int = 100, offset: int = 0
    ) -> builtins.list[CertificateRecord]:
        """A page of a device's certificates, newest first.

        Raises:
            InvalidInput: The page is out of range.
        """
        limit, offset = check.page(limit=limit, offset=offset)
        query = (
            select(CertificateRow)
            .where(CertificateRow.device_id == device_id)
            .order_by(CertificateRow.id.desc())
            .limit(limit)
            .offset(offset)
        )
        return [_record(row) for row in self._handle.session.scalars(query)]

    def lock_for_device(self, device_id: str) -> builtins.list[CertificateRecord]:
        """A device's certificates, oldest first, locked until the transaction ends.

        Every issuance for a device takes these row locks first (``SELECT … FOR UPDATE`` on
        PostgreSQL; SQLite's writing transactions are serialized anyway), so two enrollments
        of one device, or an enrollment and a revocation, take turns and each sees the
        other's outcome.
        """
        query = (
            select(CertificateRow)
            .where(CertificateRow.device_id == device_id)
            .order_by(CertificateRow.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return [_record(row) for row in self._handle.session.scalars(query)]

    def list_revoked(
        self, issuer: str, *, expired_before: datetime | None = None
    ) -> builtins.list[CertificateRecord]:
        """The revoked certificates of one issuer, in the order they were stored.

        Args:
            issuer: Name of the issuing CA.
            expired_before: Leave out certificates whose validity ended before this time
                (RFC 5280 §3.3: an entry may leave the CRL once it appeared on a CRL issued
                after the certificate expired), which keeps a CRL bounded by the live
                certificates even though every renewal revokes (supersedes) one.
        """
        query = (
            select(CertificateRow)
            .where(CertificateRow.issuer == issuer, CertificateRow.status == "revoked")
            .order_by(CertificateRow.id)
        )
        if expired_before is not None:
            since = check.aware(expired_before, name="expired_before")
            query = query.where(CertificateRow.not_after >= since)
        return [_record(row) for row in self._handle.session.scalars(query)]

    def revoked_entries(
        self, issuer: str, *, expired_before: datetime | None = None
    ) -> builtins.list[tuple[str, datetime | None, str | None]]:
        """``(serial, revoked_at, reason)`` of an issuer's revoked certificates, for its CRL.

        The same rows as :meth:`list_revoked` without the certificates themselves: a CRL is
        reissued on every renewal, so this read stays three columns wide.
        """
        table = CertificateRow.__table__
        query = (
            select(table.c.serial, table.c.revoked_at, table.c.revocation_reason)
            .where(table.c.issuer == issuer, table.c.status == "revoked")
            .order_by(table.c.id)
        )
        if expired_before is not None:
            since = check.aware(expired_before, name="expired_before")
            query = query.where(table.c.not_after >= since)
        rows = self._handle.session.connection().execute(query)
        return [(serial, revoked_at, reason) for serial, revoked_at, reason in rows]

    def list_valid(self, issuer: str, *, now: datetime) -> builtins.list[CertificateRecord]:
        """The certificates of one issuer neither revoked nor expired at ``now``, oldest first
        (a CA's retirement revokes them on its final CRL)."""
        query = (
            select(CertificateRow)
            .where(
                CertificateRow.issuer == issuer,
                CertificateRow.status == "valid",
                CertificateRow.not_after > check.aware(now, name="now"),
            )
            .order_by(CertificateRow.id)
        )
        return [_record(row) for row in self._handle.session.scalars(query)]

    def count(
        self,
        *,
        issuer: str | None = None,
        status: CertificateStatus | None = None,
        kind: CertificateKind | None = None,
    ) -> int:
        """How many certificates match all the given filters."""
        query = select(func.count()).select_from(CertificateRow)
        if issuer is not None:
            query = query.where(CertificateRow.issuer == issuer)
        if status is not None:
            query = query.where(
                CertificateRow.status == check.one_of(status, CERTIFICATE_STATUSES, name="status")
            )
        if kind is not None:
            query = query.where(CertificateRow.kind == kind)
        return self._handle.session.scalar(query) or 0

    def expiring(self, *, kind: CertificateKind, before: datetime) -> tuple[int, datetime | None]:
        """How many valid certificates of ``kind`` end before ``before``, and the soonest end
        (the expiry watch; expired ones count too)."""
        check.one_of(kind, CERTIFICATE_KINDS, name="kind")
        query = select(func.count(), func.min(CertificateRow.not_after)).where(
            CertificateRow.kind == kind,
            CertificateRow.status == "valid",
            CertificateRow.not_after < check.aware(before, name="before"),
        )
        count, soonest = self._handle.session.execute(query).one()
        return int(count or 0), soonest

    def revoke(self, issuer: str, serial: str, *, reason: str, now: datetime) -> CertificateRecord:
        """Mark a certificate revoked.

        Args:
            issuer: Name of the issuing CA.
            serial: Serial as lowercase hex.
            reason: Why, e.g. an RFC 5280 reason name such as ``keyCompromise``.
            now: The revocation time (timezone-aware).

        Returns:
            The revoked certificate.

        Raises:
            NotFound: There is no such certificate.
            Conflict: It is revoked already.
        """
        reason = check.text(reason, name="reason", max_chars=64)
        now = check.aware(now, name="now")
        row = self._row(issuer, serial, for_update=True)
        if row is None:
            raise _not_found(issuer, serial)
        if row.status == "revoked":
            raise Conflict(
                f"certificate {serial!r} of issuer {issuer!r} is already revoked",
                code="store.certificate.already_revoked",
            )
        row.status = "revoked"
        row.revoked_at = now
        row.revocation_reason = reason
        self._handle.session.flush()
        return _record(row)

    def _row(self, issuer: str, serial: str, *, for_update: bool) -> CertificateRow | None:
        query = select(CertificateRow).where(
            CertificateRow.issuer == issuer, CertificateRow.serial == serial
        )
        if for_update:
            query = query.with_for_update().execution_options(populate_existing=True)
        return self._handle.session.scalars(query).one_or_none()


def _not_found(issuer: str, serial: str) -> NotFound:
    return NotFound(
        f"certificate {serial!r} of issuer {issuer!r} not found",
        code="store.certificate.not_found",
    )
