"""Aggregates for ``/metrics``: counts by group, each one SQL query (no rows leave the store)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import func, select

from trustfleet.store import _validate as check
from trustfleet.store._models import (
    AttestationResultRow,
    CampaignDeviceRow,
    CampaignRow,
    DeviceRow,
    SecurityEventRow,
)
from trustfleet.store._session import SessionHandle

__all__ = ["MetricsRepository"]


class MetricsRepository:
    """Counts over devices, campaigns, verdicts and events, for a Prometheus scrape."""

    def __init__(self, handle: SessionHandle) -> None:
        self._handle = handle

    def _grouped(self, query: object) -> dict[str, int]:
        rows = self._handle.session.execute(query)  # type: ignore[call-overload]
        return {str(key): int(count) for key, count in rows}

    def devices_by_state(self) -> dict[str, int]:
        """Devices per state."""
        return self._grouped(select(DeviceRow.state, func.count()).group_by(DeviceRow.state))

    def devices_seen_since(self, since: datetime) -> int:
        """Devices heard from at or after ``since``."""
        since = check.aware(since, name="since")
        query = select(func.count()).where(DeviceRow.last_seen_at >= since)
        return int(self._handle.session.scalar(query) or 0)

    def devices_quarantined(self) -> int:
        """Devices in quarantine."""
        query = select(func.count()).where(DeviceRow.quarantined_at.is_not(None))
        return int(self._handle.session.scalar(query) or 0)

    def campaign_devices_by_state(self, campaign_states: Iterable[str]) -> dict[str, int]:
        """Devices of the campaigns in ``campaign_states``, per device state."""
        query = (
            select(CampaignDeviceRow.state, func.count())
            .join(CampaignRow, CampaignRow.id == CampaignDeviceRow.campaign_id)
            .where(CampaignRow.state.in_(list(campaign_states)))
            .group_by(CampaignDeviceRow.state)
        )
        return self._grouped(query)

    def verdicts_since(self, since: datetime) -> dict[str, int]:
        """Attestation verdicts made at or after ``since``: ``{"ok": n, "failed": m}``."""
        since = check.aware(since, name="since")
        query = (
            select(AttestationResultRow.ok, func.count())
            .where(AttestationResultRow.verified_at >= since)
            .group_by(AttestationResultRow.ok)
        )
        rows = self._handle.session.execute(query)
        found = {bool(ok): int(count) for ok, count in rows}
        return {"ok": found.get(True, 0), "failed": found.get(False, 0)}

    def events_by_type(self, types: Iterable[str]) -> dict[str, int]:
        """Security events of each of ``types`` (every one of them a key)."""
        wanted = list(types)
        query = (
            select(SecurityEventRow.type, func.count())
            .where(SecurityEventRow.type.in_(wanted))
            .group_by(SecurityEventRow.type)
        )
        found = self._grouped(query)
        return {kind: found.get(kind, 0) for kind in wanted}

    def events_total(self) -> int:
        """The id of the newest security event: the audit log's size once integrated."""
        return int(self._handle.session.scalar(select(func.max(SecurityEventRow.id))) or 0)
