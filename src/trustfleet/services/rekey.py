"""Fleet re-key and re-enrollment on command (one device, a model, the whole fleet).

:func:`request_reenroll` records, for each device, a ``reenroll`` command row (state ``sent``)
and a ``device.rekey.requested`` (or ``device.reenroll.requested``) security event in one
transaction, then publishes the command on ``tf/v1/d/<id>/cmd`` through one service MQTT
connection, at most ``[lifecycle] rekey_rate_per_s`` a second (a fleet does not stampede the
EST endpoint). A publish that fails marks its row ``failed``. The device answers on
``…/cmd/result`` (the ingest stores it in the row); :func:`reenroll_progress` counts the answers.

The re-enrollment itself is the device's ``simplereenroll`` (RFC 7030 §4.2.2, a new key
allowed): the service revokes the previous LDevID ``superseded`` and records
``device.rekeyed`` with the old and new key fingerprints (services/enrollment.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Final

from trustfleet.errors import Conflict, InvalidInput, Unavailable
from trustfleet.services.mqtt_client import command_payload
from trustfleet.wire import device_topic

if TYPE_CHECKING:
    from trustfleet.services.runtime import Runtime
    from trustfleet.services.service_mqtt import ServiceMqtt
    from trustfleet.store import DeviceCommandRecord, Transaction

__all__ = [
    "MAX_SELECTED",
    "ReenrollProgress",
    "reenroll_progress",
    "rekey_device",
    "request_reenroll",
    "select_devices",
    "targeted_devices",
]

logger = logging.getLogger(__name__)

MAX_SELECTED: Final = 100_000
"""The most devices one request selects."""
_PAGE = 1000


@dataclass(frozen=True)
class ReenrollProgress:
    """How far a batch of ``reenroll`` commands is.

    Attributes:
        done: Answered ``ok``.
        failed: Answered not ok, or not delivered to the broker.
        pending: Sent, not answered yet.
        failures: ``(device id, reason)`` of the failed ones.
    """

    done: int
    failed: int
    pending: int
    failures: tuple[tuple[str, str], ...] = ()

    @property
    def total(self) -> int:
        """All the commands counted."""
        return self.done + self.failed + self.pending


def targeted_devices(
    rt: Runtime,
    *,
    device_id: str | None = None,
    model: str | None = None,
    fleet: bool = False,
) -> list[str]:
    """:func:`select_devices` in its own read transaction (for the CLI)."""
    with rt.uow.begin(read_only=True) as tx:
        return select_devices(tx, device_id=device_id, model=model, fleet=fleet)


def select_devices(
    tx: Transaction,
    *,
    device_id: str | None = None,
    model: str | None = None,
    fleet: bool = False,
) -> list[str]:
    """The enrolled devices one request targets: one device, a model's, or the whole fleet.

    Raises:
        InvalidInput: Not exactly one of ``device_id``, ``model``, ``fleet``
            (``rekey.select``).
        NotFound: ``device_id`` names no device.
        Conflict: ``device_id`` is not enrolled (``command.not_enrolled``).
    """
    if sum((device_id is not None, model is not None, fleet)) != 1:
        raise InvalidInput(
            "name exactly one of: a device id, a model, or the whole fleet",
            hint="e.g. 'device rekey DEVICE_ID', 'device rekey --model gw-x1' or '--all'",
            code="rekey.select",
        )
    if device_id is not None:
        device = tx.devices.require(device_id)
        if device.state != "enrolled":
            raise Conflict(
                f"device {device_id!r} is {device.state}, not enrolled",
                hint="only an enrolled device can re-enroll",
                code="command.not_enrolled",
            )
        return [device.id]
    chosen: list[str] = []
    offset = 0
    while len(chosen) < MAX_SELECTED:
        page = tx.devices.list(limit=_PAGE, offset=offset, state="enrolled")
        chosen += [d.id for d in page if model is None or d.model == model]
        if len(page) < _PAGE:
            break
        offset += _PAGE
    return chosen[:MAX_SELECTED]


def request_reenroll(
    rt: Runtime,
    client: ServiceMqtt,
    device_ids: Sequence[str],
    *,
    rekey: bool,
    actor: str,
    now: datetime,
    on_sent: Callable[[DeviceCommandRecord], None] | None = None,
) -> list[DeviceCommandRecord]:
    """Record and send ``reenroll {"rekey": rekey}`` to each device, at a bounded rate.

    Args:
        rt: The runtime.
        client: A connected service MQTT client.
        device_ids: The devices (from :func:`select_devices`).
        rekey: New keys (``device rekey``) or renewed certificates (``device reenroll``).
        actor: Who asks (``current_operator()``), in the rows and events.
        now: The time of the rows and events.
        on_sent: Called after each device's command was handled (progress).

    Returns:
        The command rows, in the order of ``device_ids`` (a row whose publish failed is
        returned ``failed``).
    """
    interval_s = 1.0 / rt.settings.lifecycle.rekey_rate_per_s
    event = "device.rekey.requested" if rekey else "device.reenroll.requested"
    records: list[DeviceCommandRecord] = []
    next_at = time.monotonic()
    for device_id in device_ids:
        delay = next_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)  # the rate bound ([lifecycle] rekey_rate_per_s)
        next_at = max(next_at, time.monotonic()) + interval_s
        record = _send_one(rt, client, device_id, rekey=rekey, event=event, actor=actor, now=now)
        records.append(record)
        if on_sent is not None:
            on_sent(record)
    logger.info("%s: %d command(s) sent by %s", event, len(records), actor)
    return records


def _send_one(
    rt: Runtime,
    client: ServiceMqtt,
    device_id: str,
    *,
    rekey: bool,
    event: str,
    actor: str,
    now: datetime,
) -> DeviceCommandRecord:
    topic = device_topic(device_id, "cmd")
    args = {"rekey": rekey}
    command_id, payload = command_payload("reenroll", args)
    with rt.uow.begin() as tx:
        record = tx.commands.add(
            id=command_id, device_id=device_id, name="reenroll", args=args, actor=actor, now=now
        )
        tx.events.append(
            type=event, actor=actor, subject=f"device:{device_id}",
            details={"command": command_id, "rekey": rekey}, now=now,
        )  # fmt: skip
    try:
        client.publish(topic, payload, what=f"'reenroll' to {device_id}")
    except Unavailable as exc:
        logger.warning("reenroll to %s not sent: %s", device_id, exc.one_line())
        with rt.uow.begin() as tx:
            tx.commands.mark_failed(command_id, reason=exc.message)
            failed = tx.commands.get(command_id)
        return failed or record
    return record


def rekey_device(
    rt: Runtime,
    device_id: str,
    *,
    rekey: bool,
    actor: str,
    now: datetime,
    client: ServiceMqtt | None = None,
) -> DeviceCommandRecord:
    """Re-key (or re-enroll) one enrolled device: the API's ``POST /devices/{id}/rekey``.

    Args:
        rt: The runtime.
        device_id: The device.
        rekey: New key (True) or renewed certificate (False).
        actor: Who asks.
        now: The time of the row and the event.
        client: How to publish (default: a short-lived service client for this one message).

    Raises:
        NotFound: No such device.
        Conflict: The device is not enrolled (``command.not_enrolled``).
        Unavailable: The broker did not take the command (the row is marked ``failed``).
    """
    from trustfleet.services.service_mqtt import OneShotServiceMqtt  # noqa: PLC0415  # awscrt

    with rt.uow.begin(read_only=True) as tx:
        (target,) = select_devices(tx, device_id=device_id)
    publisher = client or OneShotServiceMqtt(rt.settings)
    (record,) = request_reenroll(rt, publisher, [target], rekey=rekey, actor=actor, now=now)
    if record.state == "failed":
        raise Unavailable(
            f"the command was not sent: {_reason(record)}",
            hint="is 'trustfleet server run' running?",
            code="mqtt.unavailable",
        )
    return record


def reenroll_progress(rt: Runtime, command_ids: Sequence[str]) -> ReenrollProgress:
    """Count the answers to ``reenroll`` commands (done / failed / pending)."""
    done = failed = pending = 0
    failures: list[tuple[str, str]] = []
    with rt.uow.begin(read_only=True) as tx:
        for command_id in command_ids:
            record = tx.commands.get(command_id)
            if record is None or record.state == "sent":
                pending += 1
            elif record.state == "answered" and record.ok:
                done += 1
            else:
                failed += 1
                failures.append((record.device_id, _reason(record)))
    return ReenrollProgress(done, failed, pending, tuple(failures))


def _reason(record: DeviceCommandRecord) -> str:
    result = record.result or {}
    for key in ("reason", "error"):
        value = result.get(key)
        if isinstance(value, str) and value:
            return value[:300]
    return "failed" if record.state == "failed" else "the device answered not ok"
