"""What ``/metrics`` reports about the fleet: one read transaction of SQL aggregates.

The server turns a :class:`FleetMetrics` into Prometheus gauges at each scrape; its cost does
not grow with the rows it counts beyond the database's own aggregates.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Final

from trustfleet.services.ingest_rejects import REJECTED_EVENT
from trustfleet.services.inventory import online_since
from trustfleet.store import CAMPAIGN_DEVICE_STATES, DEVICE_STATES

if TYPE_CHECKING:
    from trustfleet.services.runtime import Runtime

__all__ = [
    "ACTIVE_CAMPAIGN_STATES",
    "ATTESTATION_WINDOW",
    "COUNTED_EVENTS",
    "FleetMetrics",
    "collect",
]

ACTIVE_CAMPAIGN_STATES: Final = ("running", "paused", "halted")
"""Campaigns whose devices are counted (ended ones are history)."""
ATTESTATION_WINDOW: Final = timedelta(hours=24)
COUNTED_EVENTS: Final = {
    "enrollments": ("device.enrolled",),
    "reenrollments": ("device.reenrolled",),
    "revocations": ("device.revoked",),
    "ingest_rejections": (REJECTED_EVENT,),
    "refused_operator_requests": ("operator.refused",),
}
"""Event counters: name -> the event types counted."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FleetMetrics:
    """The fleet's numbers at one moment.

    Attributes:
        devices_by_state: Devices per state.
        online: Devices heard from within the online window.
        quarantined: Devices in quarantine.
        campaign_devices_by_state: Devices of running, paused or halted campaigns per state.
        attestations: Verdicts of the last 24 hours: ``{"ok": n, "failed": m}``.
        events: Counters of :data:`COUNTED_EVENTS` (events ever appended).
        events_total: Security events appended (the newest id).
        audit_log_size: Entries in the newest signed checkpoint of the audit log.
    """

    devices_by_state: Mapping[str, int]
    online: int
    quarantined: int
    campaign_devices_by_state: Mapping[str, int]
    attestations: Mapping[str, int]
    events: Mapping[str, int]
    events_total: int
    audit_log_size: int


def collect(rt: Runtime, *, now: datetime) -> FleetMetrics:
    """The fleet's numbers at ``now`` (one read transaction)."""
    types = [kind for kinds in COUNTED_EVENTS.values() for kind in kinds]
    with rt.uow.begin(read_only=True) as tx:
        m = tx.metrics
        by_type = m.events_by_type(types)
        checkpoint = tx.audit.latest_checkpoint()
        states = m.devices_by_state()
        campaign_states = m.campaign_devices_by_state(ACTIVE_CAMPAIGN_STATES)
        return FleetMetrics(
            devices_by_state={state: states.get(state, 0) for state in DEVICE_STATES},
            online=m.devices_seen_since(online_since(rt, now=now)),
            quarantined=m.devices_quarantined(),
            campaign_devices_by_state={
                state: campaign_states.get(state, 0) for state in CAMPAIGN_DEVICE_STATES
            },
            attestations=m.verdicts_since(now - ATTESTATION_WINDOW),
            events={name: sum(by_type[k] for k in kinds) for name, kinds in COUNTED_EVENTS.items()},
            events_total=m.events_total(),
            audit_log_size=checkpoint.size if checkpoint is not None else 0,
        )
