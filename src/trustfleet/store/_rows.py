"""Rows to records: a record reads each of its fields from the row attribute of the same name."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

__all__ = ["record_of"]

_R = TypeVar("_R")


_FIELD_NAMES: dict[type[Any], tuple[str, ...]] = {}


def _field_names(record_type: type[Any]) -> tuple[str, ...]:
    names = _FIELD_NAMES.get(record_type)
    if names is None:
        names = _FIELD_NAMES[record_type] = tuple(f.name for f in dataclasses.fields(record_type))
    return names


def record_of(record_type: type[_R], row: Any, **converted: Any) -> _R:
    """Build a record from a row (ORM object, Core row, or anything with the attributes).

    Every field of ``record_type`` is read from the row attribute of the same name, except the
    ones given in ``converted``: there a repository passes the values it has to convert, such as
    ``bytes(row.der)`` (drivers return ``memoryview`` for binary columns) or a tuple built from a
    JSON array. Text columns narrowed to a ``Literal`` type come through unchanged: their CHECK
    constraint holds them to the allowed set.

    Args:
        record_type: A dataclass from :mod:`trustfleet.store.records`.
        row: The row to read.
        **converted: Field values that replace the row's own.

    Returns:
        The record.
    """
    values = {
        name: getattr(row, name) for name in _field_names(record_type) if name not in converted
    }
    return record_type(**values, **converted)
