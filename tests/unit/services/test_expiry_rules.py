"""The expiry watch's levels and its once-per-subject-and-level rule (``now`` is a parameter)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from trustfleet.services.expiry_rules import (
    ExpirySubject,
    lifecycle_expiries,
    notices_due,
    worst_level,
)

NOW = datetime(2031, 5, 17, 9, 30, tzinfo=UTC)
WARN = timedelta(days=30)
DAY, HOUR = timedelta(days=1), timedelta(hours=1)


def _one(subject: ExpirySubject, *, now: datetime = NOW) -> str:
    (item,) = lifecycle_expiries([subject], now=now, warn=WARN)
    return item.level


LEVELS = {
    # a long-lived certificate: the 30-day window, critical in its last quarter
    "ca-far": (ExpirySubject("cert:device", "cert", NOW + 400 * DAY, NOW - 3000 * DAY), "ok"),
    "ca-window": (
        ExpirySubject("cert:device", "cert", NOW + 29 * DAY, NOW - 3000 * DAY),
        "warning",
    ),
    "ca-last-quarter": (
        ExpirySubject("cert:device", "cert", NOW + 7 * DAY, NOW - 3000 * DAY),
        "critical",
    ),
    "ca-expired": (ExpirySubject("cert:device", "cert", NOW - HOUR, NOW - 3000 * DAY), "expired"),
    "ends-exactly-now": (ExpirySubject("tls:api", "tls", NOW, NOW - 397 * DAY), "expired"),
    # a CRL valid 24 h, re-issued 6 h before: only late renewal warns (window = 24 h / 5)
    "crl-fresh": (ExpirySubject("crl:device", "crl", NOW + 18 * HOUR, NOW - 6 * HOUR), "ok"),
    "crl-due": (ExpirySubject("crl:device", "crl", NOW + 6 * HOUR, NOW - 18 * HOUR), "ok"),
    "crl-late": (ExpirySubject("crl:device", "crl", NOW + 4 * HOUR, NOW - 20 * HOUR), "warning"),
    "crl-very-late": (ExpirySubject("crl:device", "crl", NOW + HOUR, NOW - 23 * HOUR), "critical"),
    # no known start: the warning window alone
    "no-start": (ExpirySubject("tuf:root", "tuf", NOW + 20 * DAY), "warning"),
    "no-start-far": (ExpirySubject("tuf:root", "tuf", NOW + 31 * DAY), "ok"),
}


@pytest.mark.parametrize(("subject", "level"), list(LEVELS.values()), ids=list(LEVELS))
def test_levels(subject: ExpirySubject, level: str) -> None:
    assert _one(subject) == level


def test_any_date_works_the_same() -> None:
    for now in (datetime(1999, 1, 1, tzinfo=UTC), datetime(2400, 2, 29, tzinfo=UTC)):
        subject = ExpirySubject("tls:api", "tls", now + 10 * DAY, now - 387 * DAY)
        assert _one(subject, now=now) == "warning"


def test_most_urgent_first_and_worst() -> None:
    items = lifecycle_expiries(
        [
            ExpirySubject("cert:root", "cert", NOW + 4000 * DAY),
            ExpirySubject("tls:api", "tls", NOW - DAY),
            ExpirySubject("tuf:snapshot", "tuf", NOW + 10 * DAY),
        ],
        now=NOW,
        warn=WARN,
    )
    assert [i.subject for i in items] == ["tls:api", "tuf:snapshot", "cert:root"]
    assert worst_level(items) == "expired"
    assert worst_level([]) == "ok"
    assert items[0].left_text() == "-1d 0h"
    assert items[0].document()["left_s"] == -86400


def test_notices_once_per_subject_and_level() -> None:
    end = NOW + 20 * DAY
    items = lifecycle_expiries([ExpirySubject("tls:api", "tls", end)], now=NOW, warn=WARN)
    assert [i.level for i in notices_due(items, {})] == ["warning"]
    assert notices_due(items, {"tls:api": (end, "warning")}) == []  # raised already
    assert notices_due(items, {"tls:api": (end, "critical")}) == []  # a higher one was
    later = lifecycle_expiries([ExpirySubject("tls:api", "tls", end)], now=end - DAY, warn=WARN)
    assert [i.level for i in notices_due(later, {"tls:api": (end, "warning")})] == ["critical"]
    renewed_end = NOW + 40 * DAY
    renewed = lifecycle_expiries(
        [ExpirySubject("tls:api", "tls", renewed_end)], now=renewed_end - 10 * DAY, warn=WARN
    )
    assert len(notices_due(renewed, {"tls:api": (end, "critical")})) == 1  # a new certificate
    ok = lifecycle_expiries([ExpirySubject("tls:api", "tls", NOW + 300 * DAY)], now=NOW, warn=WARN)
    assert notices_due(ok, {}) == []
