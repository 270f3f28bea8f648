"""``ota/status`` reports of devices (docs/ota.md), checked and bounded (pure).

The ingest workers call :func:`parse_ota_status` on every report before anything is stored;
:func:`trustfleet.ota.campaign_rules.may_move` decides whether it may change a campaign row.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from trustfleet.errors import InvalidInput
from trustfleet.ota.campaign_rules import REPORT_STATES

__all__ = ["MAX_REPORT_NUMBER", "MAX_REPORT_TEXT_CHARS", "OtaStatus", "parse_ota_status"]

MAX_REPORT_TEXT_CHARS: Final = 256
"""Bound on every string of an ``ota/status`` report."""
MAX_REPORT_NUMBER: Final = 2**63 - 1
"""Bound on ``bytes`` and ``total``."""
_VERSION = re.compile(r"(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})")
_SURROGATE = re.compile("[\ud800-\udfff]")
"""What no database can store, and UTF-8 cannot encode (a JSON escape can spell it)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class OtaStatus:
    """One ``ota/status`` report of a device (docs/ota.md), checked and bounded.

    Attributes:
        state: One of :data:`REPORT_STATES`.
        campaign: The campaign id the update belongs to, if any.
        version: The release it is about, if given.
        from_version: The release it updates from, if given.
        bytes: Bytes downloaded so far.
        total: Bytes to download.
        delta: Whether a delta is used.
        reason: The device's explanation.
        code: The device's stable error code.
    """

    state: str
    campaign: str | None = None
    version: str | None = None
    from_version: str | None = None
    bytes: int | None = None
    total: int | None = None
    delta: bool | None = None
    reason: str | None = None
    code: str | None = None


def parse_ota_status(body: Mapping[str, Any]) -> OtaStatus:
    """Check the fields of an ``ota/status`` report.

    ``ts``, ``seq`` and ``boot`` are checked by ingest (``services.ingest.parse_message``:
    ``ts`` representable and within the configured window of the server's clock, else
    ``ingest.ts_range``), like every device message's.

    Raises:
        InvalidInput: A field is missing, of the wrong type, out of bounds or too long
            (code ``ingest.field``).
    """
    state = body.get("state")
    if not isinstance(state, str) or state not in REPORT_STATES:
        raise InvalidInput("ota/status needs a known 'state'", code="ingest.field")
    return OtaStatus(
        state=state,
        campaign=_text(body, "campaign"),
        version=_version(body, "version"),
        from_version=_version(body, "from_version"),
        bytes=_count(body, "bytes"),
        total=_count(body, "total"),
        delta=_flag(body, "delta"),
        reason=_text(body, "reason"),
        code=_text(body, "code"),
    )


def _text(body: Mapping[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if (
        not isinstance(value, str)
        or not 0 < len(value) <= MAX_REPORT_TEXT_CHARS
        or "\x00" in value
        or _SURROGATE.search(value) is not None
    ):
        raise InvalidInput(
            f"'{name}' must be 1 to {MAX_REPORT_TEXT_CHARS} characters", code="ingest.field"
        )
    return value


def _version(body: Mapping[str, Any], name: str) -> str | None:
    value = _text(body, name)
    if value is not None and _VERSION.fullmatch(value) is None:
        raise InvalidInput(f"'{name}' must be MAJOR.MINOR.PATCH", code="ingest.field")
    return value


def _count(body: Mapping[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_REPORT_NUMBER:
        raise InvalidInput(f"'{name}' must be a non-negative integer", code="ingest.field")
    return value


def _flag(body: Mapping[str, Any], name: str) -> bool | None:
    value = body.get(name)
    if value is not None and not isinstance(value, bool):
        raise InvalidInput(f"'{name}' must be true or false", code="ingest.field")
    return value
