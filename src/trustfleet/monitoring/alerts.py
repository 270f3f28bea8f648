"""When a finding opens a new alert and when it joins the open one (pure).

Findings of one kind on one device join the open alert until it has been quiet for ``quiet_s``
(``[monitoring] alert_quiet_s``). The store-backed alerts (services/alerts.py) and the evaluator
share the rule :func:`continues`; :class:`AlertBook` keeps it in memory for the evaluator.
"""

from __future__ import annotations

from datetime import datetime

from trustfleet.monitoring.records import Finding

__all__ = ["AlertBook", "continues"]


def continues(last_seen: datetime | None, at: datetime, *, quiet_s: float) -> bool:
    """Whether a finding at ``at`` joins an alert last seen at ``last_seen``.

    Args:
        last_seen: When the open alert last had a finding; None when there is no open alert.
        at: When the new finding happened.
        quiet_s: How long an alert must be quiet before the next finding opens a new one.

    Returns:
        True when the finding joins the open alert (less than ``quiet_s`` after its last
        finding; a finding older than the last one joins too), False when it opens a new alert
        (the alert had been quiet ``quiet_s`` or longer, or there is none).
    """
    if last_seen is None:
        return False
    return (at - last_seen).total_seconds() < quiet_s


class AlertBook:
    """Open alerts by (device, kind) in memory, deduplicating findings into alerts.

    Args:
        quiet_s: How long an alert must be quiet before a finding of its kind opens a new one.
    """

    def __init__(self, quiet_s: float) -> None:
        if quiet_s < 0:
            raise ValueError("quiet_s must be >= 0")
        self.quiet_s = quiet_s
        self.alerts = 0
        """Alerts opened so far."""
        self._last: dict[tuple[str, str], datetime] = {}

    def add(self, finding: Finding) -> bool:
        """Record a finding; True when it opens a new alert, False when it joins the open one."""
        key = (finding.device_id, finding.kind)
        last = self._last.get(key)
        joins = continues(last, finding.at, quiet_s=self.quiet_s)
        if last is None or finding.at > last:
            self._last[key] = finding.at
        if not joins:
            self.alerts += 1
        return not joins

    def last_seen(self, device_id: str, kind: str) -> datetime | None:
        """When the alert of ``kind`` on the device last had a finding (None: never)."""
        return self._last.get((device_id, kind))
