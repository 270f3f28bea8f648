"""Commands operators send to devices (``ping``, ``report``) and the results devices send back.

A command is recorded first (a ``device_commands`` row in state ``sent``, with the operator
who sent it, and a ``device.command`` security event, in one transaction), then published on
``tf/v1/d/<id>/cmd`` with the row's id as the wire id (QoS 1, a short-lived service client:
:func:`trustfleet.services.mqtt_client.publish_once`). A publish that fails marks the row
``failed`` with the reason. The device's answer on ``…/cmd/result`` reaches an ingest worker,
which stores it in the row (:func:`trustfleet.services.ingest.store_batch`): only the device
the command was sent to can answer it, and only once.

Publishing logs in to the service token through awscrt, so call :func:`send_device_command`
from a process that does not also log in to that token through python-pkcs11 (see
:mod:`trustfleet.services.mqtt_client`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, Literal

from trustfleet.audit.context import current_operator
from trustfleet.errors import Conflict, InvalidInput, NotFound, Unavailable
from trustfleet.services.inventory import paged
from trustfleet.services.mqtt_client import command_payload, publish_once
from trustfleet.wire import device_topic

if TYPE_CHECKING:
    from trustfleet.services.queries import Page
    from trustfleet.services.runtime import Runtime
    from trustfleet.settings import ServerSettings
    from trustfleet.store import DeviceCommandRecord

__all__ = [
    "OPERATOR_COMMANDS",
    "Publisher",
    "get_device_command",
    "list_device_commands",
    "send_device_command",
]

logger = logging.getLogger(__name__)

OPERATOR_COMMANDS: Final = ("ping", "report")
"""The commands an operator may send (``update`` belongs to campaigns)."""

Publisher = Callable[["ServerSettings", str, bytes, str], None]
"""Publishes ``payload`` on ``topic`` (settings, topic, payload, what) or raises Unavailable."""


def _publish(settings: ServerSettings, topic: str, payload: bytes, what: str) -> None:
    publish_once(settings, topic, payload, what=what)


def send_device_command(
    rt: Runtime,
    device_id: str,
    name: Literal["ping", "report"],
    args: Mapping[str, Any],
    *,
    now: datetime,
    publish: Publisher = _publish,
) -> DeviceCommandRecord:
    """Record a command to an enrolled device, then publish it.

    Args:
        rt: The runtime.
        device_id: The device.
        name: ``ping`` or ``report``.
        args: The command's arguments (a JSON object).
        now: The current time (timezone-aware): the row's ``sent_at`` and the event's time.
        publish: How to publish (the default: a short-lived service MQTT client).

    Returns:
        The recorded command (state ``sent``).

    Raises:
        InvalidInput: Unknown command (``command.unknown``) or arguments not JSON or too large.
        NotFound: No such device.
        Conflict: The device is not enrolled (``command.not_enrolled``).
        Unavailable: The broker did not take the command (the row is marked ``failed``).
    """
    if name not in OPERATOR_COMMANDS:
        raise InvalidInput(
            f"unknown command '{str(name)[:32]}'",
            hint="one of: " + ", ".join(OPERATOR_COMMANDS),
            code="command.unknown",
        )
    topic = device_topic(device_id, "cmd")  # InvalidInput for an id no device can have
    command_id, payload = command_payload(name, args)
    actor = current_operator()
    with rt.uow.begin() as tx:
        device = tx.devices.require(device_id)
        if device.state != "enrolled":
            raise Conflict(
                f"device {device_id!r} is {device.state}, not enrolled",
                hint="only an enrolled device can receive commands",
                code="command.not_enrolled",
            )
        record = tx.commands.add(
            id=command_id, device_id=device_id, name=name, args=args, actor=actor, now=now
        )
        tx.events.append(
            type="device.command", actor=actor, subject=f"device:{device_id}",
            details={"command": command_id, "name": name}, now=now,
        )  # fmt: skip
    try:
        publish(rt.settings, topic, payload, f"'{name}' to {device_id}")
    except Unavailable as exc:
        with rt.uow.begin() as tx:
            tx.commands.mark_failed(command_id, reason=exc.message)
        raise
    logger.info("sent command %s (%s) to %s for %s", command_id, name, device_id, actor)
    return record


def list_device_commands(
    rt: Runtime, device_id: str, *, limit: int, cursor: str | None = None
) -> Page[DeviceCommandRecord]:
    """A page of the commands sent to a device, newest first.

    Raises:
        NotFound: No such device.
        InvalidInput: A bad cursor or limit.
    """
    return paged(
        rt, lambda tx, n, o: tx.commands.page_for_device(device_id, limit=n, offset=o),
        limit=limit, cursor=cursor, device_id=device_id,
    )  # fmt: skip


def get_device_command(rt: Runtime, command_id: str) -> DeviceCommandRecord:
    """A command and, once the device answered, its result.

    Raises:
        NotFound: No such command (``command.not_found``).
    """
    with rt.uow.begin(read_only=True) as tx:
        record = tx.commands.get(command_id)
    if record is None:
        raise NotFound(f"command {command_id[:64]!r} not found", code="command.not_found")
    return record
