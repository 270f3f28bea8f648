"""Alert deduplication: when a finding joins the alert already open for its device and kind.

Pure and tiny on purpose: the evaluator's in-memory alert book and the service's stored alerts
(``services/alerts.py``) apply the same rule, so offline figures count alerts as the live
service raises them.
"""

from __future__ import annotations

from datetime import datetime

__all__ = ["continues"]


def continues(last_seen: datetime | None, at: datetime, *, quiet_s: float) -> bool:
    """Whether a finding at ``at`` joins the alert last seen at ``last_seen``.

    It joins while the alert has not been quiet for ``quiet_s`` seconds: a finding less than
    ``quiet_s`` after the alert's last finding (or one older than it, arriving late) continues
    it; none before (``last_seen`` None) or a longer silence starts a new alert.

    Args:
        last_seen: The open alert's last finding, or None when there is no open alert.
        at: The new finding's time.
        quiet_s: The quiet time (``[monitoring] alert_quiet_s``).

    Returns:
        True when the finding continues the alert.
    """
    if last_seen is None:
        return False
    return (at - last_seen).total_seconds() < quiet_s
