"""The session handle the repositories share, and the insert-with-savepoint helper."""

from __future__ import annotations

import contextlib
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import DeclarativeBase, Session

from trustfleet.errors import Conflict, InvalidInput, NotFound, TrustFleetError
from trustfleet.store._errors import integrity_kind

__all__ = ["SessionHandle", "insert"]


class SessionHandle:
    """Gives repositories the transaction's session, and refuses use once it has ended."""

    def __init__(self, session: Session) -> None:
        self._session: Session | None = session

    @property
    def session(self) -> Session:
        """The open session.

        Raises:
            TrustFleetError: The ``with uow.begin()`` block has already ended.
        """
        if self._session is None:
            raise TrustFleetError(
                "this transaction has ended; start a new one with uow.begin()",
                code="store.transaction_closed",
            )
        return self._session

    def close(self) -> None:
        """Make every later use fail."""
        self._session = None


def insert(
    session: Session,
    row: DeclarativeBase,
    *,
    duplicate: str,
    missing_reference: str | None = None,
) -> None:
    """Insert ``row`` inside a savepoint and translate constraint failures.

    The savepoint keeps the surrounding transaction usable after a :class:`Conflict`, so a
    caller may catch it and carry on.

    Args:
        session: The transaction's session.
        row: The new row.
        duplicate: Message when a unique constraint fails.
        missing_reference: Message when a foreign key points at nothing.

    Raises:
        Conflict: A row with the same key exists.
        NotFound: A referenced row does not exist.
        InvalidInput: A check constraint failed.
    """
    table = cast(sa.Table, row.__table__)  # every mapped row class has its Table
    values = {c.key: getattr(row, c.key) for c in table.columns}
    auto_pk = [c.key for c in table.primary_key.columns if values.get(c.key) is None]
    for key in auto_pk:
        del values[key]
    conn = session.connection()
    # A failed statement aborts the whole transaction on PostgreSQL, so it runs in a
    # savepoint there; SQLite undoes only the failed statement and needs none.
    nested = conn.begin_nested() if conn.dialect.name != "sqlite" else contextlib.nullcontext()
    try:
        with nested:  # a Core INSERT: no ORM flush machinery on the enrollment hot path
            result = cast(sa.CursorResult[Any], conn.execute(table.insert(), values))
    except sa_exc.IntegrityError as exc:
        kind = integrity_kind(exc)
        if kind == "unique":
            raise Conflict(duplicate, code="store.duplicate") from exc
        if kind == "foreign_key" and missing_reference is not None:
            raise NotFound(missing_reference, code="store.missing_reference") from exc
        if kind == "check":
            raise InvalidInput("a value is outside its allowed set", code="store.check") from exc
        raise
    for key, value in zip(auto_pk, result.inserted_primary_key or (), strict=False):
        setattr(row, key, value)
