"""Update campaigns: create, inspect, pause/resume/abort, the engine's tick, device reports.

The rules (waves, threshold, report order) are pure, in :mod:`trustfleet.ota.campaign_rules`;
this module applies them to the store. A campaign lives only in the store, so any process may
tick it and a restarted service continues where it was. Every state change writes its
security event in the same transaction (docs/ota.md, "Campaigns").
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from trustfleet.errors import Conflict, InvalidInput
from trustfleet.ota.campaign_rules import (
    FAILURE_STATES,
    IN_FLIGHT_STATES,
    check_waves,
    failure_rate,
)
from trustfleet.ota.status_report import OtaStatus
from trustfleet.ota.versions import parse_version
from trustfleet.services._campaign_ids import require_campaign
from trustfleet.services._campaign_reports import apply_ota_reports
from trustfleet.services._campaign_targets import classify, plan, resolve_model
from trustfleet.services._campaign_targets import rows as build_rows
from trustfleet.services._campaign_targets import targets as target_devices
from trustfleet.services._campaign_tick import TickResult, tick
from trustfleet.store import (
    CampaignDeviceRecord,
    CampaignRecord,
    CampaignState,
    Transaction,
)

if TYPE_CHECKING:
    from trustfleet.services.runtime import Runtime

__all__ = [
    "MAX_STATUS_DEVICES",
    "CampaignStatus",
    "TickResult",
    "WaveStatus",
    "abort",
    "campaign_status",
    "create_campaign",
    "pause",
    "record_ota_status",
    "resume",
    "retry",
    "tick",
]

logger = logging.getLogger(__name__)

MAX_STATUS_DEVICES: Final = 1000
"""Most device rows :func:`campaign_status` returns."""
_RANDOM = secrets.SystemRandom()


def create_campaign(
    rt: Runtime,
    *,
    version: str,
    model: str | None,
    devices: Sequence[str] | None,
    waves: Sequence[float],
    max_failure_rate: float,
    now: datetime,
    device_timeout_s: int | None = None,
    actor: str = "operator",
) -> CampaignRecord:
    """Create a running campaign that rolls ``version`` out in waves.

    Targets are the listed devices, or every enrolled device of the model. Devices already
    at or above the version are recorded ``up_to_date`` (wave 0, never notified); the others
    are shuffled and split into waves (:func:`~trustfleet.ota.campaign_rules.plan_waves`).
    With nothing to update the campaign is ``completed`` at once.

    Args:
        rt: The runtime (store; ``[campaigns]`` settings).
        version: The release to roll out (``MAJOR.MINOR.PATCH``).
        model: The hardware model (default: the listed devices' model, or the one model
            that has this release).
        devices: Device ids to target, or None for every enrolled device of the model.
        waves: Cumulative percentages of the devices to update, ending at 100.
        max_failure_rate: The campaign halts when the failure rate exceeds this (0 to 1).
        now: The current time.
        device_timeout_s: Time a notified device has to finish (default: settings).
        actor: Who creates it, for the security event.

    Returns:
        The new campaign.

    Raises:
        InvalidInput: Bad waves, rate, version, model or device list.
        NotFound: No such release for the model, or a listed device does not exist.
    """
    parse_version(version)
    waves = check_waves(waves)
    if not 0 <= max_failure_rate <= 1:
        raise InvalidInput("the failure rate is a fraction from 0 to 1", code="campaign.rate")
    timeout_s = device_timeout_s or rt.settings.campaigns.device_timeout_s
    with rt.uow.begin() as tx:
        model = resolve_model(tx, version=version, model=model, devices=devices)
        targets = target_devices(tx, model=model, devices=devices)
        done, left_out, todo = classify(
            tx, model=model, version=version, targets=targets, history=devices is None
        )
        _RANDOM.shuffle(todo)
        cumulative = plan(len(todo), waves)
        rows = build_rows(done=done, left_out=left_out, todo=todo, cumulative=cumulative)
        campaign_id = f"cmp-{secrets.token_hex(16)}"
        state: CampaignState = "running" if todo else "completed"
        reason = None if todo else _nothing_to_do(left_out=len(left_out))
        record = tx.campaigns.add(
            id=campaign_id, model=model, version=version, waves=waves,
            max_failure_rate=max_failure_rate, device_timeout_s=timeout_s,
            state=state, reason=reason, now=now,
        )  # fmt: skip
        tx.campaigns.add_devices(campaign_id, rows, now=now)
        counts = {"devices": len(todo), "up_to_date": len(done), "excluded": len(left_out)}
        details = _created_details(record, cumulative=cumulative, counts=counts)
        _event(tx, "campaign.created", record, actor=actor, details=details, now=now)
        if state == "completed":
            _event(tx, "campaign.completed", record, actor="system", details={}, now=now)
    logger.info("campaign %s: %s %s to %d devices", campaign_id, model, version, len(todo))
    return record


def _created_details(
    record: CampaignRecord, *, cumulative: Sequence[int], counts: Mapping[str, int]
) -> dict[str, Any]:
    sizes = [b - a for a, b in zip((0, *cumulative), cumulative, strict=False)]
    return {
        "model": record.model, "version": record.version, "waves": list(record.waves),
        "wave_sizes": sizes, "max_failure_rate": record.max_failure_rate,
        "device_timeout_s": record.device_timeout_s, **counts,
    }  # fmt: skip


def _nothing_to_do(*, left_out: int) -> str:
    reason = "every target device is already at this version"
    if left_out:
        reason += f" or was left out ({left_out}; see the campaign's devices)"
    return reason


def _event(
    tx: Transaction,
    type_: str,
    campaign: CampaignRecord,
    *,
    actor: str,
    details: Mapping[str, Any],
    now: datetime,
) -> None:
    tx.events.append(
        type=type_,
        actor=actor,
        subject=f"campaign:{campaign.id}",
        details={"model": campaign.model, "version": campaign.version, **details},
        now=now,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class WaveStatus:
    """One wave: its cumulative percentage, its size and its devices per state."""

    wave: int
    percent: float
    size: int
    states: Mapping[str, int]


@dataclass(frozen=True, slots=True, kw_only=True)
class CampaignStatus:
    """A campaign with its counts (wave 0: already up to date when created).

    Attributes:
        campaign: The campaign.
        waves: Waves 0.. with their counts.
        states: Devices per state over waves 1...
        failure_rate: Failures over finished devices of waves 1.. (None: none finished).
        failures: Failed devices.
        finished: Finished devices.
        devices: Up to ``limit`` device rows, by wave and id.
    """

    campaign: CampaignRecord
    waves: tuple[WaveStatus, ...]
    states: Mapping[str, int]
    failure_rate: float | None
    failures: int
    finished: int
    devices: tuple[CampaignDeviceRecord, ...] = field(default=())


def campaign_status(
    rt: Runtime, campaign_id: str, *, limit: int = MAX_STATUS_DEVICES
) -> CampaignStatus:
    """Where a campaign is: per-wave and per-state counts, failure rate, devices.

    Raises:
        NotFound: There is no such campaign.
    """
    with rt.uow.begin(read_only=True) as tx:
        campaign = require_campaign(tx, campaign_id)
        counts = tx.campaigns.counts(campaign.id)
        devices = tx.campaigns.devices(campaign.id, limit=limit)
    waves: list[WaveStatus] = []
    for wave, percent in enumerate((0.0, *campaign.waves)):
        states = {s: n for (w, s), n in sorted(counts.items()) if w == wave}
        waves.append(
            WaveStatus(wave=wave, percent=percent, size=sum(states.values()), states=states)
        )
    totals: dict[str, int] = {}
    for (wave, state), n in counts.items():
        if wave >= 1:
            totals[state] = totals.get(state, 0) + n
    rate, failures, finished = failure_rate(totals)
    return CampaignStatus(
        campaign=campaign, waves=tuple(waves), states=totals, failure_rate=rate,
        failures=failures, finished=finished, devices=tuple(devices),
    )  # fmt: skip


def _transition(
    rt: Runtime,
    campaign_id: str,
    *,
    allowed: tuple[str, ...],
    to: CampaignState,
    event: str,
    actor: str,
    now: datetime,
    hint: str,
    on_change: Callable[[Transaction, CampaignRecord], CampaignRecord | None] | None = None,
) -> CampaignRecord:
    with rt.uow.begin() as tx:
        campaign_id = require_campaign(tx, campaign_id).id
        campaign = tx.campaigns.lock(campaign_id)
        assert campaign is not None  # noqa: S101  # it exists and campaigns are never deleted
        if campaign.state not in allowed:
            raise Conflict(
                f"campaign {campaign_id} is {campaign.state}", hint=hint, code="campaign.state"
            )
        reason = f"{to} by {actor}" if to == "aborted" else None
        record = tx.campaigns.set_state(campaign_id, to, reason=reason, now=now)
        details: dict[str, Any] = {"from": campaign.state}
        if on_change is not None:
            record = on_change(tx, record) or record
            details["reason"] = record.reason
        _event(tx, event, record, actor=actor, details=details, now=now)
    logger.info("campaign %s: %s -> %s", campaign_id, campaign.state, to)
    return record


def pause(
    rt: Runtime, campaign_id: str, *, now: datetime, actor: str = "operator"
) -> CampaignRecord:
    """Stop notifying devices (those already notified go on and still report).

    Raises:
        NotFound: No such campaign.
        Conflict: It is not running.
    """
    return _transition(
        rt, campaign_id, allowed=("running",), to="paused", event="campaign.paused",
        actor=actor, now=now, hint="only a running campaign can be paused",
    )  # fmt: skip


def resume(
    rt: Runtime, campaign_id: str, *, now: datetime, actor: str = "operator"
) -> CampaignRecord:
    """Continue a paused campaign; the timeout of devices still updating restarts now.

    Raises:
        NotFound: No such campaign.
        Conflict: It is not paused (a halted campaign can only be aborted).
    """

    def restart(tx: Transaction, record: CampaignRecord) -> None:
        tx.campaigns.restart_clock(record.id, states=IN_FLIGHT_STATES, now=now)

    return _transition(
        rt, campaign_id, allowed=("paused",), to="running", event="campaign.resumed",
        actor=actor, now=now, on_change=restart,
        hint="only a paused campaign can be resumed; once the cause of a halt is fixed, "
        "'trustfleet campaign retry ID' gives its failed devices another try",
    )  # fmt: skip


def retry(
    rt: Runtime, campaign_id: str, *, now: datetime, actor: str = "operator"
) -> CampaignRecord:
    """Give a campaign's failed devices another try (after the cause of the failures is fixed).

    Devices of waves 1.. that failed, rolled back, refused or timed out become pending again,
    the campaign runs from the lowest wave that has one, and its failure rate starts over
    for them. Devices left out (wave 0) stay out.

    Raises:
        NotFound: No such campaign.
        Conflict: It was aborted, or no device failed.
    """

    def reset(tx: Transaction, record: CampaignRecord) -> CampaignRecord:
        count = tx.campaigns.reset_devices(record.id, states=FAILURE_STATES, now=now)
        wave = tx.campaigns.lowest_wave(record.id, state="pending")
        if not count or wave is None:
            raise Conflict(
                f"campaign {record.id} has no failed device to retry",
                hint="see 'trustfleet campaign status ID'", code="campaign.retry.none",
            )  # fmt: skip
        return tx.campaigns.set_state(
            record.id, "running", current_wave=min(wave, record.current_wave), now=now,
            reason=f"{count} failed device(s) retried by {actor}",
        )  # fmt: skip

    return _transition(
        rt, campaign_id, allowed=("running", "paused", "halted", "completed"), to="running",
        event="campaign.retried", actor=actor, now=now, on_change=reset,
        hint="an aborted campaign has ended; create a new one",
    )  # fmt: skip


def abort(
    rt: Runtime, campaign_id: str, *, now: datetime, actor: str = "operator"
) -> CampaignRecord:
    """End a running, paused or halted campaign for good (no device is notified again).

    Raises:
        NotFound: No such campaign.
        Conflict: It already ended (aborted or completed).
    """
    return _transition(
        rt, campaign_id, allowed=("running", "paused", "halted"), to="aborted",
        event="campaign.aborted", actor=actor, now=now,
        hint="a completed or aborted campaign has ended",
    )  # fmt: skip


def record_ota_status(rt: Runtime, device_id: str, report: OtaStatus, *, now: datetime) -> str:
    """Apply one device's ``ota/status`` report to its campaign row (see ingest for batches).

    Returns:
        ``applied``, ``ignored`` (late or repeated) or ``unmatched`` (no such campaign row:
        only a security event for finishing states).
    """
    with rt.uow.begin() as tx:
        outcome = apply_ota_reports(tx, [(device_id, report)], now=now)
    if outcome.applied:
        return "applied"
    return "ignored" if outcome.ignored else "unmatched"
