"""The one place where SQLAlchemy and driver exceptions become TrustFleet errors."""

from __future__ import annotations

import logging
from typing import Literal

from sqlalchemy import exc as sa_exc

from trustfleet.errors import Conflict, InvalidInput, TrustFleetError, Unavailable

__all__ = ["IntegrityKind", "integrity_kind", "translate"]

logger = logging.getLogger(__name__)

IntegrityKind = Literal["unique", "foreign_key", "check", "other"]

_SQLSTATE_KIND: dict[str, IntegrityKind] = {
    "23505": "unique",
    "23503": "foreign_key",
    "23514": "check",
}
_SQLITE_KIND: dict[str, IntegrityKind] = {
    "SQLITE_CONSTRAINT_UNIQUE": "unique",
    "SQLITE_CONSTRAINT_PRIMARYKEY": "unique",
    "SQLITE_CONSTRAINT_FOREIGNKEY": "foreign_key",
    "SQLITE_CONSTRAINT_CHECK": "check",
}


def integrity_kind(exc: sa_exc.IntegrityError) -> IntegrityKind:
    """Which constraint an integrity error broke, read from the driver's error code.

    Args:
        exc: The error SQLAlchemy raised.

    Returns:
        ``unique``, ``foreign_key``, ``check`` or ``other``.
    """
    sqlstate = getattr(exc.orig, "sqlstate", None)  # psycopg
    if isinstance(sqlstate, str):
        return _SQLSTATE_KIND.get(sqlstate, "other")
    errorname = getattr(exc.orig, "sqlite_errorname", None)  # sqlite3 (Python >= 3.11)
    if isinstance(errorname, str):
        return _SQLITE_KIND.get(errorname, "other")
    return "other"


def translate(exc: sa_exc.SQLAlchemyError) -> TrustFleetError | None:
    """The TrustFleet error for a database error, or None when it is a programming error.

    Integrity errors become :class:`~trustfleet.errors.Conflict`; lost connections, locks
    that did not clear in time and pool exhaustion become
    :class:`~trustfleet.errors.Unavailable`; a value the database cannot hold becomes
    :class:`~trustfleet.errors.InvalidInput`. Anything else (bad SQL, a mapping bug) is a bug
    and is left for the caller to re-raise as it is.

    Args:
        exc: The error SQLAlchemy raised.

    Returns:
        The error to raise ``from exc``, or None.
    """
    if isinstance(exc, sa_exc.IntegrityError):
        logger.info("integrity error translated to Conflict: %s", exc.orig)
        return Conflict(
            "the change conflicts with data already stored",
            code="store.integrity",
        )
    if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError | sa_exc.TimeoutError):
        logger.warning("database unavailable: %s", exc)
        detail = str(exc.orig if isinstance(exc, sa_exc.DBAPIError) else exc).strip()
        first_line = detail.splitlines()[0] if detail else type(exc).__name__
        return Unavailable(
            f"the database is unavailable: {first_line}",
            hint="check that the database is reachable and not locked by a stuck process, "
            "then retry",
            code="store.unavailable",
        )
    if isinstance(exc, sa_exc.DataError) or (
        type(exc) is sa_exc.StatementError and isinstance(exc.orig, ValueError | TypeError)
    ):
        # A value the database (or a bind processor) cannot hold: out of range, a NUL byte,
        # an unencodable string. The data is at fault, not the database.
        logger.info("value refused by the database: %s", type(exc.orig).__name__)
        return InvalidInput("a value does not fit the database", code="store.bad_value")
    return None
