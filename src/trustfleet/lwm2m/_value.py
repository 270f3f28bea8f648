"""The decoded-value record and the error of the content formats (re-exported by content.py)."""

from __future__ import annotations

from dataclasses import dataclass

from trustfleet.errors import InvalidInput
from trustfleet.lwm2m.objects import LwM2MPath, PathError

__all__ = ["ContentError", "Value", "parse_path"]

Scalar = int | float | bool | str | bytes


class ContentError(InvalidInput):
    """A payload does not decode in its content format (answered 4.00, or a reading dropped)."""

    def __init__(self, fmt: str, reason: str) -> None:
        super().__init__(f"Malformed {fmt} payload: {reason}", code=f"lwm2m.content.{fmt}")
        self.reason = reason


@dataclass(frozen=True, slots=True, kw_only=True)
class Value:
    """One resource (instance) value at an LwM2M path such as ``/3303/0/5700``.

    ``objlnk`` values are text ``"oid:iid"``; ``time`` values are integer seconds.
    """

    path: str
    value: Scalar
    unit: str | None = None
    time: float | None = None


def parse_path(text: str, fmt: str) -> LwM2MPath:
    """An LwM2M path or a ContentError in format ``fmt``."""
    try:
        return LwM2MPath.parse(text)
    except PathError as exc:
        raise ContentError(fmt, "not an LwM2M path") from exc
