"""Small parts of the agent's run: its summary, schedule arithmetic, certificate loading."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from trustfleet.agent.certfacts import CertFacts, read_pem_cert_facts
from trustfleet.errors import Config, InvalidInput

__all__ = ["RunSummary", "load_cert", "next_time"]

logger = logging.getLogger("trustfleet.agent.runner")


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
