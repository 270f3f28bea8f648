"""Column types shared by the models and the migrations."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import BigInteger, DateTime, Integer
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

__all__ = ["EventId", "UTCDateTime"]


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that goes in timezone-aware and comes out timezone-aware in UTC.

    PostgreSQL stores ``timestamp with time zone``. SQLite has no such type, so the value is
    converted to UTC and stored without an offset, then marked as UTC again when read.
    Naive datetimes are refused: their meaning depends on the host's clock settings.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Convert an aware datetime to UTC (and drop the offset on SQLite)."""
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("naive datetime refused: pass a timezone-aware datetime")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Return the stored value as an aware UTC datetime."""
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def EventId() -> TypeEngine[int]:  # named like a type: it is used as one
    """BIGINT on PostgreSQL; INTEGER on SQLite, where only INTEGER PRIMARY KEY autoincrements."""
    return BigInteger().with_variant(Integer(), "sqlite")
