"""The expiry watch's verdict, pure: what expires when, and how worried to be (no I/O, no clock).

Each subject (a CA or TLS certificate, a CRL's nextUpdate, a CA as OCSP signer, a TUF role, a
count of device certificates) gets a level from the time it has left:

* ``expired``: its ``not_after`` has passed;
* ``critical``: less than a quarter of its window left;
* ``warning``: inside its window;
* ``ok``: otherwise.

The window is ``[lifecycle] expiry_warn_days``, but never more than a fifth of the subject's
lifetime (``not_after - not_before``): a CRL valid 24 h and re-issued 6 h before it expires, or
a TUF timestamp re-signed every few hours, is only worth a warning when its renewal is late.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, Literal

__all__ = [
    "EXPIRY_KINDS",
    "LEVEL_ORDER",
    "ExpiryItem",
    "ExpiryKind",
    "ExpirySubject",
    "Level",
    "lifecycle_expiries",
    "notices_due",
    "worst_level",
]

ExpiryKind = Literal["cert", "crl", "ocsp-signing", "tuf", "tls"]
EXPIRY_KINDS: Final[tuple[ExpiryKind, ...]] = ("cert", "crl", "ocsp-signing", "tuf", "tls")
Level = Literal["ok", "warning", "critical", "expired"]
LEVEL_ORDER: Final[Mapping[str, int]] = {"ok": 0, "warning": 1, "critical": 2, "expired": 3}
_LIFETIME_SHARE: Final = 5
_CRITICAL_SHARE: Final = 4


@dataclass(frozen=True)
class ExpirySubject:
    """Something that expires, as the watch gathered it.

    Attributes:
        subject: A stable name (``cert:device``, ``crl:device``, ``tuf:timestamp``,
            ``tls:api``, ``devices:ldevid``), the key of ``tx.expiry_notices``.
        kind: ``cert``, ``crl``, ``ocsp-signing``, ``tuf`` or ``tls``.
        not_after: When it expires (the earliest, for a count).
        not_before: When it started (None: unknown, the warning window applies alone).
        count: How many things it stands for (device certificates), else 1.
    """

    subject: str
    kind: ExpiryKind
    not_after: datetime
    not_before: datetime | None = None
    count: int = 1


@dataclass(frozen=True)
class ExpiryItem:
    """One subject with its level at ``now``.

    Attributes:
        subject: As in :class:`ExpirySubject`.
        kind: As in :class:`ExpirySubject`.
        not_after: When it expires.
        left: Time left (negative once expired).
        level: ``ok``, ``warning``, ``critical`` or ``expired``.
        count: How many things it stands for.
    """

    subject: str
    kind: ExpiryKind
    not_after: datetime
    left: timedelta
    level: Level
    count: int = 1

    def left_text(self) -> str:
        """The time left, for people (``12d 3h``, ``-2h`` once expired)."""
        seconds = int(self.left.total_seconds())
        sign, seconds = ("-" if seconds < 0 else ""), abs(seconds)
        days, hours, minutes = seconds // 86400, seconds % 86400 // 3600, seconds % 3600 // 60
        if days:
            return f"{sign}{days}d {hours}h"
        return f"{sign}{hours}h {minutes}m" if hours else f"{sign}{minutes}m"

    def document(self) -> dict[str, Any]:
        """As JSON (``server check --json``, event details)."""
        return {
            "subject": self.subject,
            "kind": self.kind,
            "not_after": self.not_after.isoformat(),
            "left_s": int(self.left.total_seconds()),
            "level": self.level,
            "count": self.count,
        }


def _level(item: ExpirySubject, *, now: datetime, warn: timedelta) -> Level:
    left = item.not_after - now
    if left <= timedelta(0):
        return "expired"
    window = warn
    if item.not_before is not None and item.not_after > item.not_before:
        window = min(warn, (item.not_after - item.not_before) / _LIFETIME_SHARE)
    if left <= window / _CRITICAL_SHARE:
        return "critical"
    return "warning" if left <= window else "ok"


def lifecycle_expiries(
    subjects: Iterable[ExpirySubject], *, now: datetime, warn: timedelta
) -> list[ExpiryItem]:
    """Each subject's level at ``now``, the most urgent first (then the soonest).

    Args:
        subjects: What the watch gathered.
        now: The time to judge at (a parameter: tests pass any date).
        warn: ``[lifecycle] expiry_warn_days`` as a duration.

    Returns:
        One item per subject.
    """
    items = [
        ExpiryItem(
            subject=s.subject,
            kind=s.kind,
            not_after=s.not_after,
            left=s.not_after - now,
            level=_level(s, now=now, warn=warn),
            count=s.count,
        )
        for s in subjects
    ]
    return sorted(items, key=lambda i: (-LEVEL_ORDER[i.level], i.not_after, i.subject))


def worst_level(items: Sequence[ExpiryItem]) -> Level:
    """The most urgent level among ``items`` (``ok`` if none)."""
    return max((i.level for i in items), key=LEVEL_ORDER.__getitem__, default="ok")


def notices_due(
    items: Iterable[ExpiryItem], raised: Mapping[str, tuple[datetime, str]]
) -> list[ExpiryItem]:
    """The items that need a new notice: once per subject and level.

    A subject needs one when it is not ``ok`` and its last notice (``raised``: subject →
    (not_after, level)) was for another ``not_after`` (renewed, then nearing expiry again)
    or a lower level.
    """
    due = []
    for item in items:
        if item.level == "ok":
            continue
        last = raised.get(item.subject)
        if (
            last is None
            or last[0] != item.not_after
            or LEVEL_ORDER[item.level] > LEVEL_ORDER.get(last[1], 0)
        ):
            due.append(item)
    return due
