"""Findings join the open alert until it has been quiet for quiet_s (the rule H3's store uses)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from trustfleet.monitoring.alerts import AlertBook, continues
from trustfleet.monitoring.records import Finding

T0 = datetime(2026, 3, 2, tzinfo=UTC)


def _finding(minutes: float, *, device: str = "dev-a", kind: str = "monitor.x") -> Finding:
    return Finding(device, kind, "medium", "rule", T0 + timedelta(minutes=minutes), "x")


CONTINUES = {
    "no-open-alert": (None, 0, False),
    "same-time": (T0, 0, True),
    "within-quiet": (T0, 59, True),
    "exactly-quiet": (T0, 60, True),
    "after-quiet": (T0, 61, False),
    "older-than-last": (T0, -5, True),
}


@pytest.mark.parametrize("case", list(CONTINUES), ids=list(CONTINUES))
def test_continues(case: str) -> None:
    last, minutes, want = CONTINUES[case]
    assert continues(last, T0 + timedelta(minutes=minutes), quiet_s=3600) is want


def test_book_dedups_per_device_and_kind_and_reopens_after_quiet() -> None:
    book = AlertBook(quiet_s=600)
    assert book.add(_finding(0)) is True
    assert book.add(_finding(5)) is False
    assert book.add(_finding(14)) is False  # 9 minutes after the last finding: still open
    assert book.add(_finding(0, kind="monitor.y")) is True
    assert book.add(_finding(0, device="dev-b")) is True
    assert book.add(_finding(25)) is True  # 11 quiet minutes: a new alert
    assert book.add(_finding(3)) is False  # a late finding joins
    assert book.last_seen("dev-a", "monitor.x") == T0 + timedelta(minutes=25)
    assert book.last_seen("dev-c", "monitor.x") is None
    assert book.alerts == 4


def test_book_refuses_a_negative_quiet_time() -> None:
    with pytest.raises(ValueError, match="quiet_s"):
        AlertBook(quiet_s=-1)
