"""The campaign engine's step: time-outs, halt or advance, then notify the current wave.

Each running campaign is handled in two transactions, each holding the campaign's row lock
(``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so concurrent tickers split the campaigns; the
write lock on SQLite): first the decision (time-outs, halt, complete, next wave) with its
events, then the notifications. A device moves from ``pending`` to ``notified`` only in the
transaction that sent its command, so a failed send leaves it pending for the next tick and
no two tickers notify the same device.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from trustfleet.errors import TrustFleetError
from trustfleet.ota.campaign_rules import IN_FLIGHT_STATES, Step, next_step
from trustfleet.store import CampaignRecord, Transaction

if TYPE_CHECKING:
    from trustfleet.services.runtime import Runtime

__all__ = ["Sender", "TickResult", "tick"]

logger = logging.getLogger(__name__)

_OUTCOME: Final = {"halt": "halted", "complete": "completed", "advance": "advanced"}

Sender = Callable[[str, dict[str, Any]], None]
"""Sends the ``update`` command's arguments to one device; raises when it cannot."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TickResult:
    """What one tick did.

    Attributes:
        campaigns: Running campaigns looked at.
        notified: Devices sent the ``update`` command.
        timed_out: Devices that did not finish in time.
        advanced: Campaigns that started a next wave.
        halted: Campaigns halted by the failure threshold.
        completed: Campaigns whose last wave finished.
        errors: Campaigns whose step failed (retried next tick).
    """

    campaigns: int = 0
    notified: int = 0
    timed_out: int = 0
    advanced: tuple[str, ...] = ()
    halted: tuple[str, ...] = ()
    completed: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()


def tick(
    rt: Runtime,
    *,
    now: datetime,
    send: Sender,
    flush: Callable[[], None] | None = None,
    max_notify: int | None = None,
) -> TickResult:
    """Advance every running campaign by one step.

    Args:
        rt: The runtime (store; ``[campaigns] max_notify_per_tick``).
        now: The current time.
        send: Publishes the ``update`` command (``{"version", "campaign"}``) to a device.
        flush: Called after a campaign's sends and before their commit; it raises if any
            send was not acknowledged (then those devices stay pending).
        max_notify: Most devices notified in this tick (default: the setting).

    Returns:
        What happened.
    """
    budget = max_notify if max_notify is not None else rt.settings.campaigns.max_notify_per_tick
    with rt.uow.begin(read_only=True) as tx:
        running = [c.id for c in tx.campaigns.list(state="running", limit=1000)]
    notified = timed_out_total = 0
    lists: dict[str, list[str]] = {k: [] for k in ("advanced", "halted", "completed", "errors")}
    for campaign_id in running:
        try:
            step, timed_out = _decide(rt, campaign_id, now=now)
            timed_out_total += timed_out
            if step is not None and step.action in _OUTCOME:
                lists[_OUTCOME[step.action]].append(campaign_id)
            if step is not None and step.action in ("advance", "wait") and budget > 0:
                sent = _notify(rt, campaign_id, now=now, send=send, flush=flush, limit=budget)
                notified += sent
                budget -= sent
        except TrustFleetError as exc:
            logger.warning("campaign %s: tick failed: %s", campaign_id, exc.one_line())
            lists["errors"].append(campaign_id)
    return TickResult(
        campaigns=len(running),
        notified=notified,
        timed_out=timed_out_total,
        advanced=tuple(lists["advanced"]),
        halted=tuple(lists["halted"]),
        completed=tuple(lists["completed"]),
        errors=tuple(lists["errors"]),
    )


def _decide(rt: Runtime, campaign_id: str, *, now: datetime) -> tuple[Step | None, int]:
    with rt.uow.begin() as tx:
        campaign = tx.campaigns.lock(campaign_id, skip_locked=True)
        if campaign is None or campaign.state != "running":
            return None, 0
        cutoff = now - timedelta(seconds=campaign.device_timeout_s)
        timed_out = tx.campaigns.time_out(
            campaign_id,
            states=IN_FLIGHT_STATES,
            notified_before=cutoff,
            reason=f"did not finish within {campaign.device_timeout_s} s",
            now=now,
        )
        step = next_step(
            current_wave=campaign.current_wave,
            wave_count=len(campaign.waves),
            counts=tx.campaigns.counts(campaign_id),
            max_failure_rate=campaign.max_failure_rate,
        )
        _apply(tx, campaign, step, timed_out=timed_out, now=now)
    return step, timed_out


def _apply(
    tx: Transaction, campaign: CampaignRecord, step: Step, *, timed_out: int, now: datetime
) -> None:
    facts: Mapping[str, Any] = {
        "wave": step.wave,
        "failure_rate": step.rate,
        "failures": step.failures,
        "finished": step.finished,
        "timed_out": timed_out,
    }
    if step.action == "wait":
        return
    if step.action == "halt":
        record = tx.campaigns.set_state(campaign.id, "halted", reason=step.reason, now=now)
        type_ = "campaign.halted"
    elif step.action == "complete":
        record = tx.campaigns.set_state(
            campaign.id, "completed", current_wave=step.wave, reason=step.reason, now=now
        )
        type_ = "campaign.completed"
    else:
        record = tx.campaigns.set_state(campaign.id, "running", current_wave=step.wave, now=now)
        type_ = "campaign.wave_started"
    tx.events.append(
        type=type_,
        actor="system",
        subject=f"campaign:{record.id}",
        details={"model": record.model, "version": record.version, "reason": step.reason, **facts},
        now=now,
    )
    logger.info("campaign %s: %s (wave %d)", campaign.id, type_, step.wave)


def _notify(
    rt: Runtime,
    campaign_id: str,
    *,
    now: datetime,
    send: Sender,
    flush: Callable[[], None] | None,
    limit: int,
) -> int:
    with rt.uow.begin() as tx:
        campaign = tx.campaigns.lock(campaign_id, skip_locked=True)
        if campaign is None or campaign.state != "running":
            return 0
        device_ids = tx.campaigns.pending(campaign_id, wave=campaign.current_wave, limit=limit)
        if not device_ids:
            return 0
        args = {"version": campaign.version, "campaign": campaign.id}
        protocols = tx.devices.protocols(device_ids)
        for device_id in device_ids:
            # An LwM2M device gets no MQTT command: marked notified, its job appears for the
            # LwM2M server (services.lwm2m firmware_job), which drives object 5.
            if protocols.get(device_id) != "lwm2m":
                send(device_id, dict(args))
        if flush is not None:
            flush()
        tx.campaigns.mark_notified(campaign_id, device_ids, now=now)
    logger.info("campaign %s: notified %d device(s)", campaign_id, len(device_ids))
    return len(device_ids)
