"""Repository of each issuer's current CRL."""

from __future__ import annotations

from datetime import datetime
from typing import Final

from sqlalchemy import select

from trustfleet.errors import Conflict, InvalidInput
from trustfleet.store import _validate as check
from trustfleet.store._models import CrlRow
from trustfleet.store._rows import record_of
from trustfleet.store._session import SessionHandle, insert
from trustfleet.store.records import CrlRecord

__all__ = ["CrlRepository"]

_MAX_CRL_NUMBER: Final = 2**63 - 1  # BIGINT; RFC 5280 allows 20 octets, we issue far fewer


def _record(row: CrlRow) -> CrlRecord:
    return record_of(CrlRecord, row, der=bytes(row.der))


class CrlRepository:
    """The current CRL of each issuer, within one transaction. Get it as ``tx.crls``."""

    def __init__(self, handle: SessionHandle) -> None:
        self._handle = handle

    def get(self, issuer: str) -> CrlRecord | None:
        """The issuer's current CRL, or None."""
        row = self._handle.session.get(CrlRow, issuer)
        return None if row is None else _record(row)

    def number(self, issuer: str) -> int | None:
        """The issuer's current CRL number, or None (cheap: the DER is not read)."""
        return self._handle.session.scalar(select(CrlRow.crl_number).where(CrlRow.issuer == issuer))

    def next_number(self, issuer: str) -> int:
        """The CRL number to put in the issuer's next CRL: one more than the current, or 1.

        On PostgreSQL the current row is locked until the transaction ends, so two
        transactions cannot both use the same number.
        """
        query = select(CrlRow.crl_number).where(CrlRow.issuer == issuer).with_for_update()
        current = self._handle.session.scalar(query)
        return 1 if current is None else current + 1

    def put(
        self,
        *,
        issuer: str,
        crl_number: int,
        this_update: datetime,
        next_update: datetime,
        der: bytes,
    ) -> CrlRecord:
        """Store a new CRL as the issuer's current one.

        Args:
            issuer: Name of the issuing CA.
            crl_number: Its CRL number; must exceed the stored one.
            this_update: Its thisUpdate (timezone-aware).
            next_update: Its nextUpdate (timezone-aware, not before ``this_update``).
            der: The DER-encoded CRL.

        Returns:
            The stored CRL.

        Raises:
            Conflict: ``crl_number`` does not exceed the stored CRL's number.
            InvalidInput: A value is malformed.
        """
        this_update = check.aware(this_update, name="this_update")
        next_update = check.aware(next_update, name="next_update")
        if next_update < this_update:
            raise InvalidInput("next_update is before this_update", code="store.bad_validity")
        if not 0 <= crl_number <= _MAX_CRL_NUMBER:
            raise InvalidInput("crl_number is out of range", code="store.bad_crl_number")
        if not der:
            raise InvalidInput("der is empty", code="store.empty_der")
        session = self._handle.session
        row = session.get(CrlRow, issuer, with_for_update=True, populate_existing=True)
        if row is None:
            row = CrlRow(
                issuer=check.text(issuer, name="issuer", max_chars=64),
                crl_number=crl_number,
                this_update=this_update,
                next_update=next_update,
                der=bytes(der),
            )
            insert(session, row, duplicate=f"a CRL of issuer {issuer!r} was stored meanwhile")
            return _record(row)
        if crl_number <= row.crl_number:
            raise Conflict(
                f"CRL number {crl_number} of issuer {issuer!r} does not exceed the stored "
                f"{row.crl_number}",
                hint="use crls.next_number(issuer)",
                code="store.crl.number_not_increasing",
            )
        row.crl_number = crl_number
        row.this_update = this_update
        row.next_update = next_update
        row.der = bytes(der)
        session.flush()
        return _record(row)
