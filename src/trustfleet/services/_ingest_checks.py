"""The field checks of the ingest verifier (pure): every bound the store will apply, and more.

:func:`trustfleet.services.ingest.parse_message` calls these before a message joins a batch,
so a message the store would refuse is refused alone and never fails its neighbours
(docs/mqtt.md, "What the service accepts").
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from trustfleet.errors import InvalidInput
from trustfleet.settings import ServerSettings
from trustfleet.store import MAX_BOOT_CHARS, check_metrics

__all__ = [
    "MAX_METRICS",
    "MAX_METRIC_NAME_CHARS",
    "MAX_SEQ",
    "MAX_TS_CHARS",
    "IngestLimits",
    "check_boot",
    "check_metrics_object",
    "check_seq",
    "load_body",
    "parse_ts",
]

MAX_METRICS: Final = 256
"""Most metrics in one telemetry message."""
MAX_METRIC_NAME_CHARS: Final = 64
MAX_SEQ: Final = 2**63 - 1
"""The store's BIGINT."""
MAX_TS_CHARS: Final = 40
METRIC_MIN: Final = -(2**63)
METRIC_MAX: Final = 2**63 - 1
"""Integer metrics are 64-bit (what a BIGINT or a JSON consumer holds); floats are finite."""
_BOOT = re.compile(rf"[A-Za-z0-9_-]{{1,{MAX_BOOT_CHARS}}}")


@dataclass(frozen=True, slots=True, kw_only=True)
class IngestLimits:
    """The bounds of one device message (``[broker] max_payload_bytes`` and ``[ingest]``).

    Attributes:
        max_bytes: Payload size.
        ts_max_past: How far before the server's clock ``ts`` may lie.
        ts_max_future: How far after the server's clock ``ts`` may lie.
        max_json_depth: Deepest nesting of objects and arrays (the payload is level 1).
    """

    max_bytes: int = 16 * 1024
    ts_max_past: timedelta = timedelta(days=7)
    ts_max_future: timedelta = timedelta(hours=1)
    max_json_depth: int = 16

    @classmethod
    def from_settings(cls, settings: ServerSettings) -> IngestLimits:
        """The limits a server home configures."""
        ingest = settings.ingest
        return cls(
            max_bytes=settings.broker.max_payload_bytes,
            ts_max_past=timedelta(seconds=ingest.ts_max_past_s),
            ts_max_future=timedelta(seconds=ingest.ts_max_future_s),
            max_json_depth=ingest.max_json_depth,
        )


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


def load_body(payload: bytes, limits: IngestLimits) -> dict[str, Any]:
    """The payload as a JSON object within the size and depth bounds, storable as text.

    Raises:
        InvalidInput: ``ingest.too_large``, ``ingest.not_json``, ``ingest.not_object`` or
            ``ingest.too_deep``.
    """
    if len(payload) > limits.max_bytes:
        raise InvalidInput(f"payload over {limits.max_bytes} bytes", code="ingest.too_large")
    try:
        body = json.loads(payload.decode("utf-8"), parse_constant=_refuse_constant)
        if b"\\ud" in payload or b"\\uD" in payload:
            # JSON escapes can spell lone surrogates ("\ud800"), which no database can store
            # (strict UTF-8 decoding already refused raw ones).
            json.dumps(body, ensure_ascii=False).encode("utf-8")
    except (UnicodeError, ValueError, RecursionError) as exc:
        raise InvalidInput("payload is not UTF-8 JSON", code="ingest.not_json") from exc
    if not isinstance(body, dict):
        raise InvalidInput("payload is not a JSON object", code="ingest.not_object")
    _check_depth(body, limits.max_json_depth)
    return body


def _check_depth(body: dict[str, Any], max_depth: int) -> None:
    """Refuse ``body`` if it nests deeper than ``max_depth`` (``ingest.too_deep``)."""
    stack: list[tuple[dict[str, Any] | list[Any], int]] = [(body, 1)]
    while stack:  # iterative: a deep payload cannot exhaust the interpreter's stack here
        value, depth = stack.pop()
        if depth > max_depth:
            raise InvalidInput(
                f"payload nests deeper than {max_depth} levels", code="ingest.too_deep"
            )
        children = value.values() if isinstance(value, dict) else value
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))


def parse_ts(value: object, *, now: datetime, limits: IngestLimits) -> datetime:
    """The device's ``ts`` in UTC, if it is RFC 3339 with an offset and near ``now``.

    Raises:
        InvalidInput: ``ingest.field`` (not an RFC 3339 string with an offset) or
            ``ingest.ts_range`` (not representable in UTC, or outside the window).
    """
    if not isinstance(value, str) or len(value) > MAX_TS_CHARS:
        raise InvalidInput("ts must be an RFC 3339 string", code="ingest.field")
    try:
        ts = datetime.fromisoformat(value)
    except ValueError as exc:
        raise InvalidInput("ts must be an RFC 3339 string", code="ingest.field") from exc
    if ts.utcoffset() is None:  # naive (no offset in the text)
        raise InvalidInput("ts must carry a UTC offset", code="ingest.field")
    # The window first: aware datetimes compare across offsets without overflow, while
    # converting one at the edge of the range does not (regression: astimezone raised
    # OverflowError on "0001-01-01T00:00:00+01:00" and ended the worker). Inside the window
    # the conversion cannot overflow.
    if not now - limits.ts_max_past <= ts <= now + limits.ts_max_future:
        raise InvalidInput(
            "ts is too far from the server's clock (see [ingest] ts_max_past_s, ts_max_future_s)",
            code="ingest.ts_range",
        )
    return ts.astimezone(UTC)


def check_seq(value: object) -> int:
    """``seq`` if it is an integer the store's BIGINT holds and not negative."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_SEQ:
        raise InvalidInput("seq must be a non-negative integer", code="ingest.field")
    return value


def check_boot(value: object) -> str | None:
    """The optional per-boot id: 1 to 32 of ``[A-Za-z0-9_-]``."""
    if value is None:
        return None
    if not isinstance(value, str) or _BOOT.fullmatch(value) is None:
        raise InvalidInput(
            f"boot must be 1 to {MAX_BOOT_CHARS} letters, digits, '-' or '_'",
            code="ingest.field",
        )
    return value


def check_metrics_object(value: object) -> dict[str, Any]:
    """The ``metrics`` of a telemetry message, checked against the store's own encoding.

    Raises:
        InvalidInput: ``ingest.field`` (shape, names, types), ``ingest.range`` (a number
            outside 64 bits or not finite) or ``ingest.too_large`` (over the store's bound
            once encoded as the store encodes it).
    """
    if not isinstance(value, dict) or len(value) > MAX_METRICS:
        raise InvalidInput(
            f"metrics must be an object of at most {MAX_METRICS} entries", code="ingest.field"
        )
    for name, number in value.items():
        if not 1 <= len(name) <= MAX_METRIC_NAME_CHARS or "\x00" in name:
            raise InvalidInput("a metric name is empty, too long or holds NUL", code="ingest.field")
        if isinstance(number, bool) or not isinstance(number, int | float):
            raise InvalidInput("a metric is not a number", code="ingest.field")
        if isinstance(number, float) and not math.isfinite(number):
            raise InvalidInput("a metric is not finite", code="ingest.range")
        if isinstance(number, int) and not METRIC_MIN <= number <= METRIC_MAX:
            raise InvalidInput("an integer metric does not fit 64 bits", code="ingest.range")
    try:
        return check_metrics(value)
    except InvalidInput as exc:
        # Regression: 256 metrics of 1e22 fit 16 KiB as sent but not as the store encodes
        # them ("1e+22"); the whole batch then failed.
        code = "ingest.too_large" if exc.code == "store.details_too_large" else "ingest.field"
        raise InvalidInput("metrics exceed the store's bound once encoded", code=code) from exc
