"""The device broker as ``server run`` uses it: one port, two adapters (ADR 0024).

:class:`~trustfleet.broker.Broker` runs Mosquitto for one host; :class:`~trustfleet.broker.
rabbitmq.RabbitBroker` attaches to an operator's RabbitMQ cluster. ``server/_broker_side.py``
drives either through these calls.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from trustfleet.broker._trust import BrokerCa
from trustfleet.errors import TrustFleetError

__all__ = ["DeviceBroker", "SyncReport"]


@dataclass(frozen=True, slots=True)
class SyncReport:
    """What one :meth:`DeviceBroker.sync_devices` changed."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()


class DeviceBroker(Protocol):
    """What the service needs of the broker its devices connect to."""

    failure: TrustFleetError | None
    """Why the broker is down for good (Mosquitto's supervisor gave up), if it is."""

    @property
    def pid(self) -> int | None:
        """The broker's process id if this host runs it, else None."""

    def start(self, *, trust: Sequence[BrokerCa]) -> None:
        """Start (Mosquitto) or attach (RabbitMQ) with these device CAs and CRLs."""

    def stop(self) -> None:
        """Stop (Mosquitto) or detach (RabbitMQ)."""

    def reload_trust(self, trust: Sequence[BrokerCa]) -> None:
        """Trust exactly these device CAs, with their current CRLs, for new handshakes."""

    def reload_tls(self) -> None:
        """Serve the renewed server certificate (RabbitMQ: the operator's nodes do)."""

    def kick(self, username: str) -> None:
        """End every live connection of ``username``."""

    def follow_up(self) -> None:
        """Periodic work of the adapter (each revocation poll); never raises."""

    def quarantine(self, device_id: str) -> None:
        """Confine a device to its ``ota/`` and ``attest/`` topics."""

    def release(self, device_id: str) -> None:
        """End a device's quarantine."""

    def quarantined(self) -> set[str]:
        """The devices confined now."""

    def sync_devices(self, active: Iterable[str]) -> SyncReport:
        """Admit exactly these devices (a broker that admits by certificate alone: nothing)."""
