"""Pure rules of Firmware Update object 5 (OMA LwM2M 1.1 Core TS E.6), pull mode.

The server writes Package URI ``/5/0/1``, observes State ``/5/0/3`` and Update Result
``/5/0/5``, executes Update ``/5/0/2`` when the state is Downloaded, and maps what the device
reports to the campaign's per-device states
(:data:`trustfleet.ota.campaign_rules.DeviceUpdateState`).
No I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import IntEnum
from typing import Final, Literal

from trustfleet.errors import InvalidInput
from trustfleet.ota.campaign_rules import DeviceUpdateState

__all__ = [
    "PACKAGE_URI",
    "STATE",
    "UPDATE",
    "UPDATE_RESULT",
    "Action",
    "FirmwareProgress",
    "Result",
    "State",
    "apply",
    "campaign_state",
    "next_action",
    "observe_value",
]

PACKAGE_URI: Final = "/5/0/1"
UPDATE: Final = "/5/0/2"
STATE: Final = "/5/0/3"
UPDATE_RESULT: Final = "/5/0/5"


class State(IntEnum):
    """Resource 3, State."""

    IDLE = 0
    DOWNLOADING = 1
    DOWNLOADED = 2
    UPDATING = 3


class Result(IntEnum):
    """Resource 5, Update Result."""

    INITIAL = 0
    SUCCESS = 1
    NO_STORAGE = 2
    NO_MEMORY = 3
    CONNECTION_LOST = 4
    INTEGRITY_FAILED = 5
    UNSUPPORTED_TYPE = 6
    INVALID_URI = 7
    UPDATE_FAILED = 8
    UNSUPPORTED_PROTOCOL = 9


Action = Literal["wait", "execute", "succeeded", "failed"]
"""What the server does next: nothing, execute /5/0/2, or the job is over."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FirmwareProgress:
    """The server's view of one device's firmware job.

    Attributes:
        version: The release being delivered.
        state: The last State the device reported.
        result: The last Update Result it reported.
        executed: Whether the server has executed /5/0/2 for this job.
    """

    version: str
    state: State = State.IDLE
    result: Result = Result.INITIAL
    executed: bool = False


def observe_value(path: str, value: object) -> tuple[str, int]:
    """Check a reported State or Update Result value.

    Returns:
        ``("state", n)`` or ``("result", n)``.

    Raises:
        InvalidInput: Not /5/0/3 or /5/0/5, or a value outside the TS's range
            (code ``lwm2m.firmware.value``).
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput("A firmware state is not an integer.", code="lwm2m.firmware.value")
    if path == STATE and value in State.__members__.values():
        return "state", value
    if path == UPDATE_RESULT and value in Result.__members__.values():
        return "result", value
    raise InvalidInput("A firmware state is out of range.", code="lwm2m.firmware.value")


def apply(progress: FirmwareProgress, *, path: str, value: object) -> FirmwareProgress:
    """The progress after the device reported ``value`` at ``path``.

    Raises:
        InvalidInput: See :func:`observe_value`.
    """
    kind, number = observe_value(path, value)
    if kind == "state":
        return replace(progress, state=State(number))
    return replace(progress, result=Result(number))


def next_action(progress: FirmwareProgress) -> Action:
    """What to do after a report.

    * a failure result (2..9) ends the job as failed;
    * Success (1) after the server executed the update ends it as succeeded;
    * Downloaded (2) with Initial result and no execute yet: execute;
    * anything else: wait for the next notification.
    """
    if progress.result not in (Result.INITIAL, Result.SUCCESS):
        return "failed"
    if progress.result == Result.SUCCESS and progress.executed:
        return "succeeded"
    if progress.state == State.DOWNLOADED and not progress.executed:
        return "execute"
    return "wait"


def campaign_state(progress: FirmwareProgress) -> DeviceUpdateState:
    """The campaign's per-device state for what the device reported."""
    match next_action(progress):
        case "failed":
            return "refused" if progress.result == Result.INTEGRITY_FAILED else "failed"
        case "succeeded":
            return "committed"
        case _:
            pass
    if progress.state == State.UPDATING or progress.executed:
        return "installing"
    if progress.state in (State.DOWNLOADING, State.DOWNLOADED):
        return "downloading"
    return "notified"
