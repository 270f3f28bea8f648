"""The updater's reports (``tf/v1/d/<id>/ota/status``, docs/ota.md) and their throttle."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from trustfleet.errors import InvalidInput
from trustfleet.ota.status_report import MAX_REPORT_TEXT_CHARS
from trustfleet.ota.versions import parse_version

__all__ = ["REPORTED", "OtaReport", "ProgressThrottle"]

REPORTED = frozenset(
    {
        "checking",
        "downloading",
        "installing",
        "rebooting",
        "committed",
        "failed",
        "rolled_back",
        "refused",
        "up_to_date",
    }
)
"""States that are reported (``installed`` and ``trial`` are internal)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class OtaReport:
    """One ``ota/status`` report (``ts`` and ``seq`` are added by the agent)."""

    state: str
    campaign: str | None = None
    version: str | None = None
    from_version: str | None = None
    bytes: int = 0
    total: int = 0
    delta: bool | None = None
    reason: str = ""
    code: str = ""

    def to_document(self) -> dict[str, Any]:
        """The report's fields, as published (absent text and invalid versions as null)."""
        return {
            "campaign": self.campaign or None,
            "version": _version_or_none(self.version),
            "from_version": _version_or_none(self.from_version),
            "state": self.state,
            "bytes": self.bytes,
            "total": self.total,
            "delta": self.delta,
            "reason": self.reason[:MAX_REPORT_TEXT_CHARS] or None,
            "code": self.code[:MAX_REPORT_TEXT_CHARS] or None,
        }


def _version_or_none(text: str | None) -> str | None:
    """A version for the wire: only ``MAJOR.MINOR.PATCH`` (what the service accepts)."""
    if not text:
        return None
    try:
        parse_version(text)
    except InvalidInput:
        return None
    return text


class ProgressThrottle:
    """Turn per-chunk progress into at most ``steps`` reports (plus the last one).

    Args:
        steps: How many progress reports a download may produce.
        emit: Called with (bytes held, total) when a report is due.
    """

    def __init__(self, *, steps: int, emit: Callable[[int, int], None]) -> None:
        self._steps = max(steps, 1)
        self._emit = emit
        self._next = 0

    def __call__(self, held: int, total: int) -> None:
        if total <= 0:
            return
        step = held * self._steps // total
        if step >= self._next:
            self._next = step + 1
            self._emit(held, total)
