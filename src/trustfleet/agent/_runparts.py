"""Small parts of the agent's run: its summary, schedule arithmetic, certificate loading,
enrollment once the token is free."""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from trustfleet.agent.certfacts import CertFacts, read_pem_cert_facts
from trustfleet.errors import Config, Conflict, InvalidInput

if TYPE_CHECKING:
    from trustfleet.agent.settings import DeviceSettings

__all__ = ["Mode", "RunSummary", "enroll_when_released", "load_cert", "next_time"]

logger = logging.getLogger("trustfleet.agent.runner")

Mode = Literal["enroll", "reenroll"]

_TOKEN_RELEASE_S = 10.0  # how long a re-enrollment waits for awscrt to release the token


@dataclass
class RunSummary:
    """What a run did (``--once --json`` prints it)."""

    device_id: str
    enrolled: bool = False
    reenrolled: int = 0
    published: dict[str, int] = field(default_factory=dict)
    acked: int = 0
    rejected: int = 0
    queue_depth: int = 0
    queue_dropped: int = 0
    commands_answered: int = 0
    reconnects: int = 0
    ldevid_serial: str = ""
    ldevid_not_after: str = ""
    rss_kb: int = 0
    firmware_version: str = ""
    slot: str = ""
    ota_state: str = ""
    ota_version: str = ""
    ota_reason: str = ""
    ota_code: str = ""


def next_time(previous: float, interval: float, current: float) -> float:
    """The next due time of a schedule (never in the past)."""
    following = previous + interval
    return following if following > current else current + interval


def require_cert(path: Any) -> CertFacts:
    """The certificate at ``path`` (the IDevID: nothing can replace it).

    Raises:
        Config: It is missing or not a PEM certificate (the file, not the service, is wrong).
    """
    try:
        return read_pem_cert_facts(path.read_bytes())
    except (InvalidInput, OSError) as exc:
        raise Config(
            f"{path} is not a PEM certificate (damaged or replaced)",
            hint="restore the device folder from its backup, or provision the device again",
            code="agent.certificate.corrupt",
        ) from exc


def load_cert(path: Any) -> CertFacts | None:
    """The certificate at ``path``, or None if it is not a PEM certificate."""
    try:
        return read_pem_cert_facts(path.read_bytes())
    except (InvalidInput, OSError):
        logger.warning("%s is not a PEM certificate; enrolling again", path)
        return None


def enroll_when_released(
    settings: DeviceSettings, mode: Mode, *, now: Callable[[], datetime]
) -> CertFacts:
    """Enroll (EST ``mode``), retrying while awscrt still holds a logged-in session of the
    released MQTT client (bounded by ``_TOKEN_RELEASE_S``); the new LDevID's facts."""
    # Loaded here: enrollment needs `cryptography` and the token library; the steady state
    # does not, and the agent's resident memory stays lower without them.
    from trustfleet.agent.est import enroll_device  # noqa: PLC0415

    deadline = time.monotonic() + _TOKEN_RELEASE_S
    while True:
        try:
            outcome = enroll_device(settings, mode=mode, now=now())
            return read_pem_cert_facts(outcome.path.read_bytes())
        except Conflict:
            if time.monotonic() >= deadline:
                raise
            gc.collect()
            time.sleep(0.1)
