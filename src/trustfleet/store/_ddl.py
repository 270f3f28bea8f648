"""Column and constraint builders shared by the hand-written migrations (and the models' CHECKs).

The migrations are history: what these return must never change, or an old revision would
create a different schema from the one it created when it was written. Add a new builder
rather than change one.
"""

from __future__ import annotations

import sqlalchemy as sa

from trustfleet.store._types import UTCDateTime

__all__ = ["big_id", "device_fk", "one_of", "utc"]


def utc() -> sa.types.TypeEngine[object]:
    """The timezone-aware UTC datetime type of every timestamp column."""
    return UTCDateTime()  # type: ignore[return-value]  # TypeDecorator[datetime] is a TypeEngine


def one_of(column: str, values: tuple[str, ...]) -> str:
    """A CHECK condition: ``column`` holds one of ``values`` (plain words, no quotes)."""
    quoted = ", ".join(f"'{value}'" for value in values)
    return f"{column} IN ({quoted})"


def big_id() -> sa.Column[int]:
    """The autoincrement ``id`` of a large table: BIGINT, INTEGER on SQLite (its rowid)."""
    return sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        autoincrement=True,
        nullable=False,
    )


def device_fk(table: str) -> sa.ForeignKeyConstraint:
    """The foreign key from ``table.device_id`` to ``devices.id``, named by convention."""
    return sa.ForeignKeyConstraint(
        ["device_id"], ["devices.id"], name=f"fk_{table}_device_id_devices"
    )
