"""The record of a command sent to a device (table ``device_commands``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal

from trustfleet.store.records import JSON

__all__ = ["COMMAND_STATE_VALUES", "CommandState", "DeviceCommandRecord"]

CommandState = Literal["sent", "answered", "failed"]
COMMAND_STATE_VALUES: Final[tuple[CommandState, ...]] = ("sent", "answered", "failed")
"""``sent``: recorded and published; ``answered``: the device sent its result; ``failed``:
it could not be published (``result`` holds ``{"error": <reason>}``)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceCommandRecord:
    """A command sent to a device and the result it sent back.

    Attributes:
        id: The command id on the wire (``cmd`` payload ``id``).
        device_id: The device it was sent to.
        name: The command (``ping``, ``report``, ...).
        args: Its arguments (a JSON object).
        actor: Who sent it (``current_operator()`` when it was recorded).
        state: ``sent``, ``answered`` or ``failed``.
        sent_at: When it was recorded (UTC).
        ok: The device's ``ok`` once answered.
        result: The device's result body once answered (bounded), or the failure's reason.
        answered_at: When the answer was stored (UTC).
    """

    id: str
    device_id: str
    name: str
    args: Mapping[str, JSON]
    actor: str
    state: CommandState
    sent_at: datetime
    ok: bool | None = None
    result: Mapping[str, JSON] | None = None
    answered_at: datetime | None = None
