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

from trustfleet.errors import Conflict, InvalidInput, NotFound
from trustfleet.ota.campaign_rules import (
    IN_FLIGHT_STATES,
    check_waves,
    failure_rate,
    plan_waves,
)
from trustfleet.ota.status_report import OtaStatus
from trustfleet.ota.versions import check_model, parse_version
from trustfleet.services._campaign_reports import apply_ota_reports
from trustfleet.services._campaign_tick import TickResult, tick
from trustfleet.store import (
    CampaignDeviceRecord,
    CampaignRecord,
    CampaignState,
    NewCampaignDevice,
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
    "tick",
]

logger = logging.getLogger(__name__)

MAX_TARGET_DEVICES: Final = 1_000_000
"""Most devices one campaign may target."""
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
        model = _resolve_model(tx, version=version, model=model, devices=devices)
        targets = _targets(tx, model=model, devices=devices)
        current = parse_version(version)
        done = sorted(d for d, fw in targets.items() if fw and _at_least(fw, current))
        todo = sorted(set(targets) - set(done))
        _RANDOM.shuffle(todo)
        cumulative = _plan(len(todo), waves)
        rows = _rows(done=done, todo=todo, cumulative=cumulative)
        campaign_id = f"cmp-{secrets.token_hex(16)}"
        state: CampaignState = "running" if todo else "completed"
        reason = None if todo else "every target device is already at this version"
        record = tx.campaigns.add(
            id=campaign_id, model=model, version=version, waves=waves,
            max_failure_rate=max_failure_rate, device_timeout_s=timeout_s,
            state=state, reason=reason, now=now,
        )  # fmt: skip
        tx.campaigns.add_devices(campaign_id, rows, now=now)
        sizes = [b - a for a, b in zip((0, *cumulative), cumulative, strict=False)]
        details = {
            "model": model, "version": version, "waves": list(waves), "wave_sizes": sizes,
            "max_failure_rate": max_failure_rate, "device_timeout_s": timeout_s,
            "devices": len(todo), "up_to_date": len(done),
        }  # fmt: skip
        _event(tx, "campaign.created", record, actor=actor, details=details, now=now)
        if state == "completed":
            _event(tx, "campaign.completed", record, actor="system", details={}, now=now)
    logger.info("campaign %s: %s %s to %d devices", campaign_id, model, version, len(todo))
    return record


def _rows(
    *, done: Sequence[str], todo: Sequence[str], cumulative: Sequence[int]
) -> list[NewCampaignDevice]:
    rows = [NewCampaignDevice(d, 0, "up_to_date") for d in done]
    start = 0
    for wave, end in enumerate(cumulative, start=1):
        rows += [NewCampaignDevice(d, wave) for d in todo[start:end]]
        start = end
    return rows


def _plan(count: int, waves: Sequence[float]) -> tuple[int, ...]:
    return plan_waves(count, waves) if count else tuple(0 for _ in waves)


def _at_least(firmware: str, target: tuple[int, int, int]) -> bool:
    try:
        return parse_version(firmware) >= target
    except InvalidInput:
        return False


def _resolve_model(
    tx: Transaction, *, version: str, model: str | None, devices: Sequence[str] | None
) -> str:
    if model is None and devices:
        models = {m for m, _state, _fw in tx.campaigns.target_facts(devices[:1]).values()}
        model = next(iter(models), None)
    if model is None:
        models = {r.model for r in tx.releases.list(limit=1000) if r.version == version}
        if not models:
            raise NotFound(
                f"no published release {version}",
                hint="build and publish it first with 'trustfleet release build' and "
                "'trustfleet release publish' (see 'trustfleet release list')",
                code="campaign.release",
            )
        if len(models) != 1:
            raise InvalidInput(
                f"{len(models)} models have a release {version}",
                hint="name the model with --model",
                code="campaign.model",
            )
        model = models.pop()
    check_model(model)
    if tx.releases.get(model=model, version=version) is None:
        raise NotFound(
            f"no release {version} of model {model}",
            hint="publish it first with 'trustfleet release publish'",
            code="campaign.release",
        )
    return model


def _targets(
    tx: Transaction, *, model: str, devices: Sequence[str] | None
) -> dict[str, str | None]:
    if devices is None:
        return tx.campaigns.enrolled_devices(model, limit=MAX_TARGET_DEVICES)
    wanted = list(dict.fromkeys(devices))
    if not wanted or len(wanted) > MAX_TARGET_DEVICES:
        raise InvalidInput("list 1 or more devices", code="campaign.devices")
    facts = tx.campaigns.target_facts(wanted)
    for device_id in wanted:
        if device_id not in facts:
            raise NotFound(
                f"device {device_id[:64]!r} not found",
                hint="see the devices with 'trustfleet device list'",
                code="campaign.device",
            )
        their_model, state, _fw = facts[device_id]
        if their_model != model or state != "enrolled":
            raise InvalidInput(
                f"device {device_id} is a {their_model} in state {state}",
                hint=f"list only enrolled {model} devices",
                code="campaign.device",
            )
    return {d: facts[d][2] for d in wanted}


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
        campaign = _require(tx, campaign_id)
        counts = tx.campaigns.counts(campaign_id)
        devices = tx.campaigns.devices(campaign_id, limit=limit)
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


def _require(tx: Transaction, campaign_id: str) -> CampaignRecord:
    record = tx.campaigns.get(campaign_id[:64])
    if record is None:
        raise NotFound(
            f"campaign {campaign_id[:64]!r} not found",
            hint="see the campaigns with 'trustfleet campaign list'",
            code="campaign.not_found",
        )
    return record


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
    on_change: Callable[[Transaction, CampaignRecord], None] | None = None,
) -> CampaignRecord:
    with rt.uow.begin() as tx:
        _require(tx, campaign_id)
        campaign = tx.campaigns.lock(campaign_id)
        assert campaign is not None  # noqa: S101  # it exists and campaigns are never deleted
        if campaign.state not in allowed:
            raise Conflict(
                f"campaign {campaign_id} is {campaign.state}", hint=hint, code="campaign.state"
            )
        reason = f"{to} by {actor}" if to == "aborted" else None
        record = tx.campaigns.set_state(campaign_id, to, reason=reason, now=now)
        if on_change is not None:
            on_change(tx, record)
        _event(tx, event, record, actor=actor, details={"from": campaign.state}, now=now)
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
        hint="only a paused campaign can be resumed; abort a halted one and create a new one",
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
