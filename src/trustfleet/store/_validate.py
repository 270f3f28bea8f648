"""Input checks shared by the repositories. Each failure is an InvalidInput."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from trustfleet.errors import InvalidInput

MAX_LIST_LIMIT: Final = 1000
"""Largest page a ``list`` call returns."""

_SERIAL = re.compile(r"[1-9a-f][0-9a-f]{0,63}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_EVENT_TYPE = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+")


def aware(value: datetime, *, name: str) -> datetime:
    """Return ``value`` in UTC; refuse a naive datetime."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput(f"{name} must be a timezone-aware datetime", code="store.naive_datetime")
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:  # e.g. 0001-01-01T00:00:00+01:00
        raise InvalidInput(f"{name} is out of range in UTC", code="store.bad_value") from exc


def text(value: str, *, name: str, max_chars: int) -> str:
    """Return ``value`` if it is a non-empty string of at most ``max_chars`` without NULs."""
    if not value or len(value) > max_chars or "\x00" in value:
        raise InvalidInput(
            f"{name} must be 1 to {max_chars} characters without NUL", code="store.bad_text"
        )
    return value


BIGINT_MIN: Final = -(2**63)
BIGINT_MAX: Final = 2**63 - 1


def bigint(value: int, *, name: str) -> int:
    """Return ``value`` if a BIGINT column can hold it."""
    if isinstance(value, bool) or not BIGINT_MIN <= value <= BIGINT_MAX:
        raise InvalidInput(f"{name} must fit in 64 bits", code="store.bad_value")
    return value


def one_of(value: str, allowed: tuple[str, ...], *, name: str) -> str:
    """Return ``value`` if it is one of ``allowed``."""
    if value not in allowed:
        raise InvalidInput(
            f"{name} {value!r} is not one of {', '.join(allowed)}", code="store.bad_value"
        )
    return value


def serial(value: str) -> str:
    """Return a certificate serial if it is lowercase hex without leading zeros."""
    if not _SERIAL.fullmatch(value):
        raise InvalidInput(
            f"serial {value!r} must be lowercase hex without leading zeros (format(n, 'x'))",
            code="store.bad_serial",
        )
    return value


def sha256_hex(value: str) -> str:
    """Return a SHA-256 fingerprint if it is 64 lowercase hex digits."""
    if not _SHA256.fullmatch(value):
        raise InvalidInput("sha256 must be 64 lowercase hex digits", code="store.bad_fingerprint")
    return value


def event_type(value: str) -> str:
    """Return an event type if it is a dotted lowercase name such as ``device.registered``."""
    if len(value) > 64 or not _EVENT_TYPE.fullmatch(value):
        raise InvalidInput(
            f"event type {value!r} must be a dotted lowercase name such as 'device.registered'",
            code="store.bad_event_type",
        )
    return value


def page(*, limit: int, offset: int = 0) -> tuple[int, int]:
    """Return ``(limit, offset)`` if ``1 <= limit <= MAX_LIST_LIMIT`` and ``offset >= 0``."""
    if not 1 <= limit <= MAX_LIST_LIMIT or offset < 0:
        raise InvalidInput(
            f"limit must be 1 to {MAX_LIST_LIMIT} and offset at least 0", code="store.bad_page"
        )
    return limit, offset


MAX_JSON_DEPTH: Final = 32
"""Deepest nesting of lists and objects accepted in event details."""


def json_object(value: Mapping[str, Any], *, max_bytes: int) -> dict[str, Any]:
    """Return a plain-JSON copy of ``value`` if it is a JSON object of at most ``max_bytes``.

    Refuses non-string keys, values JSON cannot hold (NaN, infinities, bytes, other objects)
    and nesting deeper than :data:`MAX_JSON_DEPTH`.
    """
    if not isinstance(value, Mapping):
        raise InvalidInput("details must be a JSON object", code="store.bad_details")
    _check_json(value, depth=0)
    try:
        encoded = json.dumps(value, allow_nan=False, ensure_ascii=False)
        size = len(encoded.encode())
    except (TypeError, ValueError) as exc:  # UnicodeEncodeError: a lone surrogate ("\ud800")
        raise InvalidInput(
            f"details are not JSON: {type(exc).__name__}", code="store.bad_details"
        ) from exc
    if size > max_bytes:
        raise InvalidInput(
            f"details exceed {max_bytes} bytes of JSON", code="store.details_too_large"
        )
    loaded: dict[str, Any] = json.loads(encoded)
    return loaded


def _check_json(value: object, *, depth: int) -> None:
    if depth > MAX_JSON_DEPTH:
        raise InvalidInput(
            f"details nest deeper than {MAX_JSON_DEPTH} levels", code="store.bad_details"
        )
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidInput("details keys must be strings", code="store.bad_details")
            _check_json(item, depth=depth + 1)
    elif isinstance(value, list | tuple):
        for item in value:
            _check_json(item, depth=depth + 1)
    elif value is not None and not isinstance(value, str | int | float):
        raise InvalidInput(
            f"details hold a {type(value).__name__}, which JSON cannot represent",
            code="store.bad_details",
        )
