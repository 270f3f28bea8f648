"""Applying devices' ``ota/status`` reports to their campaign rows (inside one transaction).

Used by :func:`trustfleet.services.campaigns.record_ota_status` (one report) and by the
ingest workers' batches (:func:`trustfleet.services.ingest.store_batch`). Lock order, so two
writers never wait on each other in a circle: campaign rows (sorted by id), their device
rows, ``devices`` rows, then the security event log last.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from trustfleet.ota.campaign_rules import EXCLUDING_CODES, FINISHED_STATES, may_move
from trustfleet.ota.status_report import OtaStatus
from trustfleet.store import CampaignDeviceState, CampaignRecord, Transaction

__all__ = ["OtaOutcome", "apply_ota_reports"]

logger = logging.getLogger(__name__)

_EVENT_STATES: Final = frozenset({"committed", "failed", "rolled_back", "refused"})
"""Finishing states that write an ``ota.update.<state>`` event."""


@dataclass(frozen=True, slots=True)
class OtaOutcome:
    """What a batch of reports did.

    Attributes:
        applied: Reports that moved a campaign row.
        ignored: Reports that came too late (the row had moved on) or repeated a finish.
        unmatched: Reports naming no campaign, an unknown one, or one without the device.
    """

    applied: int = 0
    ignored: int = 0
    unmatched: int = 0


def apply_ota_reports(
    tx: Transaction, reports: Sequence[tuple[str, OtaStatus]], *, now: datetime
) -> OtaOutcome:
    """Apply reports, in order, to their campaigns' rows.

    A row only moves forward (:func:`~trustfleet.ota.campaign_rules.may_move`). On
    ``committed`` the device's ``firmware_version`` is set (to the reported version, else
    the campaign's); a version other than the campaign's makes the row ``failed``. Reports
    that match no campaign row only write an ``ota.status.unmatched`` event (finishing
    states only, so progress reports cannot flood the log).

    Args:
        tx: The open transaction.
        reports: ``(device_id, report)`` pairs; the devices are enrolled.
        now: The receiving time.

    Returns:
        What was applied.
    """
    if not reports:
        return OtaOutcome()
    wanted = sorted({r.campaign for _, r in reports if r.campaign is not None})
    campaigns = {cid: tx.campaigns.lock(cid) for cid in wanted}
    events: list[tuple[str, str, dict[str, Any]]] = []
    firmware: dict[str, str] = {}
    applied = ignored = unmatched = 0
    for device_id, report in reports:
        campaign = campaigns.get(report.campaign) if report.campaign is not None else None
        row = tx.campaigns.device(campaign.id, device_id) if campaign is not None else None
        if campaign is None or row is None:
            unmatched += 1
            if report.state in FINISHED_STATES:
                events.append(("ota.status.unmatched", device_id, _details(report)))
            continue
        if not may_move(row.state, report.state):
            ignored += 1
            continue
        applied += 1
        state = _apply_one(tx, campaign, device_id, report, now=now, firmware=firmware)
        if state in _EVENT_STATES:
            details = {**_details(report), "campaign": campaign.id, "wave": row.wave}
            events.append((f"ota.update.{state}", device_id, details))
    for device_id, version in sorted(firmware.items()):
        tx.devices.set_firmware_version(device_id, version, now=now)
    for type_, device_id, details in events:
        subject = f"device:{device_id}"
        tx.events.append(type=type_, actor=subject, subject=subject, details=details, now=now)
    return OtaOutcome(applied=applied, ignored=ignored, unmatched=unmatched)


def _apply_one(
    tx: Transaction,
    campaign: CampaignRecord,
    device_id: str,
    report: OtaStatus,
    *,
    now: datetime,
    firmware: dict[str, str],
) -> str:
    state: CampaignDeviceState = report.state  # type: ignore[assignment]  # REPORT_STATES ⊂ it
    reason, code = report.reason, report.code
    if state == "refused" and code in EXCLUDING_CODES:
        # It cannot take any update: left out (wave 0), not a failure of this release.
        why = f"left out: {reason or code}"
        tx.campaigns.exclude_device(campaign.id, device_id, reason=why, code=code, now=now)
        return state
    if report.state == "committed":
        installed = report.version or campaign.version
        firmware[device_id] = installed
        if installed != campaign.version:
            state, code = "failed", "campaign.version_mismatch"
            reason = f"committed {installed} instead of {campaign.version}"
    tx.campaigns.update_device(
        campaign.id,
        device_id,
        state=state,
        bytes=report.bytes,
        total=report.total,
        delta=report.delta,
        reason=reason,
        code=code,
        now=now,
    )
    return state


def _details(report: OtaStatus) -> dict[str, Any]:
    fields: Mapping[str, Any] = {
        "campaign": report.campaign,
        "state": report.state,
        "version": report.version,
        "from_version": report.from_version,
        "reason": report.reason,
        "code": report.code,
    }
    return {k: v for k, v in fields.items() if v is not None}
