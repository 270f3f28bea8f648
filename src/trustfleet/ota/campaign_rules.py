"""Update campaigns as pure rules: wave planning, the failure threshold, device report order.

Nothing here does I/O or reads a clock: :mod:`trustfleet.services.campaigns` applies these
rules to the store. The rules are written down in docs/ota.md ("Campaigns"):

* Waves are cumulative percentages of the devices to update (``1,10,50,100%``), strictly
  increasing, the last one 100. Wave *i* takes the first ``ceil(n * p_i / 100)`` devices,
  and at least one more than wave *i-1* while devices remain.
* The failure rate is ``failures / finished`` over the devices of waves 1.. that finished;
  the campaign halts when it is strictly greater than ``max_failure_rate``.
* A device's row only moves forward (:func:`may_move`): a late ``downloading`` never
  overwrites ``committed``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Final, Literal, get_args

from trustfleet.errors import InvalidInput

__all__ = [
    "CAMPAIGN_STATES",
    "DEVICE_UPDATE_STATES",
    "EXCLUDING_CODES",
    "FAILURE_STATES",
    "FINISHED_STATES",
    "IN_FLIGHT_STATES",
    "MAX_DEVICE_TIMEOUT_S",
    "MAX_WAVES",
    "REPORT_STATES",
    "CampaignState",
    "DeviceUpdateState",
    "Step",
    "Target",
    "check_waves",
    "classify_target",
    "failure_rate",
    "may_move",
    "next_step",
    "parse_duration",
    "parse_rate",
    "parse_waves",
    "plan_waves",
]

CampaignState = Literal["running", "paused", "aborted", "halted", "completed"]
DeviceUpdateState = Literal[
    "pending",
    "notified",
    "checking",
    "downloading",
    "installing",
    "rebooting",
    "committed",
    "up_to_date",
    "failed",
    "rolled_back",
    "refused",
    "timed_out",
]

CAMPAIGN_STATES: Final[tuple[CampaignState, ...]] = get_args(CampaignState)
DEVICE_UPDATE_STATES: Final[tuple[DeviceUpdateState, ...]] = get_args(DeviceUpdateState)
"""The states of a device's row, in the order of the Literal (progress first)."""
REPORT_STATES: Final = frozenset(DEVICE_UPDATE_STATES) - {"pending", "notified", "timed_out"}
"""What a device may report on ``ota/status`` (docs/ota.md)."""
IN_FLIGHT_STATES: Final = frozenset(
    {"notified", "checking", "downloading", "installing", "rebooting"}
)
SUCCESS_STATES: Final = frozenset({"committed", "up_to_date"})
FAILURE_STATES: Final = frozenset({"failed", "rolled_back", "refused", "timed_out"})
FINISHED_STATES: Final = SUCCESS_STATES | FAILURE_STATES
_PROGRESS_ORDER: Final = tuple(s for s in DEVICE_UPDATE_STATES if s not in FINISHED_STATES)
"""The unfinished states in the order a device goes through them."""

EXCLUDING_CODES: Final = frozenset({"ota.no_boot_chain"})
"""Refusal codes that say a device cannot take any update (not that this update failed): such
a device is left out of the campaign (wave 0) instead of counting as a failure."""
MAX_WAVES: Final = 20
"""Most waves one campaign may have."""
MIN_DEVICE_TIMEOUT_S: Final = 1
MAX_DEVICE_TIMEOUT_S: Final = 7 * 24 * 3600
_MAX_INPUT_CHARS: Final = 200
_DURATION = re.compile(r"([0-9]{1,9})([smhd]?)")
_UNIT_S: Final = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def check_waves(waves: Sequence[float]) -> tuple[float, ...]:
    """Return the waves if they are 1 to 20 strictly increasing percentages ending at 100.

    Raises:
        InvalidInput: They are not (code ``campaign.waves``).
    """
    hint = "give cumulative percentages ending at 100, e.g. 1,10,50,100%"
    values = tuple(float(w) for w in waves)
    if not 1 <= len(values) <= MAX_WAVES:
        raise InvalidInput(
            f"a campaign has 1 to {MAX_WAVES} waves", hint=hint, code="campaign.waves"
        )
    previous = 0.0
    for value in values:
        if not previous < value:  # NaN fails too
            raise InvalidInput(
                "waves must be strictly increasing percentages above 0",
                hint=hint,
                code="campaign.waves",
            )
        previous = value
    if values[-1] != 100:  # with the above: every wave is in (0, 100]
        raise InvalidInput("the last wave must be 100%", hint=hint, code="campaign.waves")
    return values


def parse_waves(text: str) -> tuple[float, ...]:
    """Parse ``"1,10,50,100%"`` (a ``%`` after any or all numbers) into percentages.

    Raises:
        InvalidInput: The text is not such a list (code ``campaign.waves``).
    """
    hint = "give cumulative percentages ending at 100, e.g. --waves 1,10,50,100%"
    if len(text) > _MAX_INPUT_CHARS:
        raise InvalidInput("the wave list is too long", hint=hint, code="campaign.waves")
    try:
        values = [float(part.strip().removesuffix("%")) for part in text.split(",")]
    except ValueError as exc:
        raise InvalidInput(
            f"'{text}' is not a list of percentages", hint=hint, code="campaign.waves"
        ) from exc
    return check_waves(values)


def parse_rate(text: str) -> float:
    """Parse a failure rate: ``"5%"`` or a fraction ``"0.05"``, into a fraction from 0 to 1.

    Raises:
        InvalidInput: It is not a rate from 0 to 100% (code ``campaign.rate``).
    """
    hint = "give a percentage such as 5% (or a fraction such as 0.05)"
    raw = text.strip()[:_MAX_INPUT_CHARS]
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError as exc:
        raise InvalidInput(
            f"'{raw}' is not a failure rate", hint=hint, code="campaign.rate"
        ) from exc
    if not 0 <= value <= 1:  # NaN and infinities fail too
        if not raw.endswith("%") and 1 < value <= 100:
            hint = f"a bare number is a fraction from 0 to 1; for percent write {raw}%"
        raise InvalidInput(f"'{raw}' is not a rate from 0 to 100%", hint=hint, code="campaign.rate")
    return value


def parse_duration(text: str) -> int:
    """Parse ``"90s"``, ``"30m"``, ``"2h"``, ``"1d"`` or plain seconds into seconds.

    Raises:
        InvalidInput: Not a duration from 1 s to 7 days (code ``campaign.duration``).
    """
    hint = "use a number with s, m, h or d, e.g. 30m"
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise InvalidInput(f"'{text[:40]}' is not a duration", hint=hint, code="campaign.duration")
    seconds = int(match.group(1)) * _UNIT_S[match.group(2)]
    if not MIN_DEVICE_TIMEOUT_S <= seconds <= MAX_DEVICE_TIMEOUT_S:
        raise InvalidInput("a device timeout is 1 s to 7 days", hint=hint, code="campaign.duration")
    return seconds


def plan_waves(device_count: int, waves: Sequence[float]) -> tuple[int, ...]:
    """The cumulative number of devices at the end of each wave.

    Wave *i* covers ``ceil(n * p_i / 100)`` devices, and at least one more than wave *i-1*
    while devices remain; with fewer devices than waves the last waves are empty.

    Args:
        device_count: Devices to update (not counting those already up to date).
        waves: Cumulative percentages (see :func:`check_waves`).

    Returns:
        One cumulative count per wave; the last equals ``device_count``.
    """
    counts: list[int] = []
    previous = 0
    for percent in check_waves(waves):
        share = Fraction(str(percent)) * device_count / 100  # the decimal the user wrote
        target = max(math.ceil(share), previous + 1)
        previous = min(device_count, target)
        counts.append(previous)
    return tuple(counts)


def failure_rate(counts: Mapping[str, int]) -> tuple[float | None, int, int]:
    """The failure rate over finished devices.

    Args:
        counts: Devices per state (of waves 1.., not the already up-to-date wave 0).

    Returns:
        ``(rate, failures, finished)``; the rate is None while none has finished.
    """
    finished = sum(n for state, n in counts.items() if state in FINISHED_STATES)
    failures = sum(n for state, n in counts.items() if state in FAILURE_STATES)
    return (failures / finished if finished else None), failures, finished


def may_move(current: str, reported: str) -> bool:
    """Whether a device's row may go from ``current`` to ``reported``.

    Forward only; a progress state may repeat (new byte counts). A finished row changes only
    from ``timed_out`` (the service's guess) to what the device itself reports finishing with.
    """
    if current == "timed_out":
        return reported in FINISHED_STATES and reported != "timed_out"
    if current in FINISHED_STATES:
        return False
    if reported in FINISHED_STATES:
        return True
    return _PROGRESS_ORDER.index(reported) >= _PROGRESS_ORDER.index(current)


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    """What the engine does next with a running campaign.

    Attributes:
        action: ``halt``, ``complete``, ``advance`` (to ``wave``) or ``wait``.
        wave: The wave to be in after the step.
        rate: The failure rate over finished devices (None: none finished).
        failures: Failed devices.
        finished: Finished devices.
        reason: Why it halts or completes.
    """

    action: Literal["halt", "complete", "advance", "wait"]
    wave: int
    rate: float | None
    failures: int
    finished: int
    reason: str | None = None


def next_step(
    *,
    current_wave: int,
    wave_count: int,
    counts: Mapping[tuple[int, str], int],
    max_failure_rate: float,
) -> Step:
    """Decide the next step of a running campaign from its counts.

    Args:
        current_wave: The wave being rolled out (1-based).
        wave_count: How many waves the campaign has.
        counts: Devices per ``(wave, state)``; wave 0 (already up to date) is ignored.
        max_failure_rate: The threshold (a fraction); crossing it (``>``) halts.

    Returns:
        The step.
    """
    by_state: dict[str, int] = {}
    for (wave, state), n in counts.items():
        if wave >= 1:
            by_state[state] = by_state.get(state, 0) + n
    rate, failures, finished = failure_rate(by_state)
    if rate is not None and rate > max_failure_rate:
        reason = (
            f"failure rate {rate:.1%} ({failures} of {finished} finished devices) "
            f"exceeds {max_failure_rate:.1%}"
        )
        return Step(
            action="halt", wave=current_wave, rate=rate, failures=failures, finished=finished,
            reason=reason,
        )  # fmt: skip
    wave = current_wave
    while _wave_finished(counts, wave):
        if wave >= wave_count:
            reason = f"all {wave_count} waves finished; {failures} of {finished} failed"
            return Step(
                action="complete", wave=wave, rate=rate, failures=failures, finished=finished,
                reason=reason,
            )  # fmt: skip
        wave += 1
    action: Literal["advance", "wait"] = "advance" if wave != current_wave else "wait"
    return Step(action=action, wave=wave, rate=rate, failures=failures, finished=finished)


def _wave_finished(counts: Mapping[tuple[int, str], int], wave: int) -> bool:
    return not any(
        n for (w, state), n in counts.items() if w == wave and state not in FINISHED_STATES
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """What a campaign does with one candidate device.

    Attributes:
        action: ``update`` (a wave), ``up_to_date`` or ``exclude`` (both wave 0, never
            notified, never counted in the failure rate).
        reason: Why it is left out (``exclude`` only).
        code: A stable code for the reason (``exclude`` only).
    """

    action: Literal["update", "up_to_date", "exclude"]
    reason: str | None = None
    code: str | None = None


def classify_target(
    *,
    firmware: tuple[int, int, int] | None,
    version: tuple[int, int, int],
    min_version: tuple[int, int, int],
    refusal: tuple[str, str | None, str] | None,
) -> Target:
    """Decide whether a device takes a release, from what the service knows of it.

    Args:
        firmware: The version the device last committed (None: unknown).
        version: The release rolled out.
        min_version: The lowest version the release may be installed over.
        refusal: The device's newest refusal with an :data:`EXCLUDING_CODES` code, as
            ``(campaign_id, reason, code)``, or None.

    Returns:
        The decision, with the reason for a device left out.
    """
    if firmware is not None and firmware >= version:
        return Target(action="up_to_date")
    if refusal is not None:
        campaign_id, reason, code = refusal
        why = reason or code
        return Target(
            action="exclude",
            reason=f"cannot take updates: {why} (reported in {campaign_id})"[:256],
            code=f"campaign.excluded.{code.rsplit('.', 1)[-1]}",
        )
    if firmware is not None and firmware < min_version:
        low, need = ".".join(map(str, firmware)), ".".join(map(str, min_version))
        return Target(
            action="exclude",
            reason=f"runs {low}, below the release's min_version {need}",
            code="campaign.excluded.below_min_version",
        )
    return Target(action="update")
