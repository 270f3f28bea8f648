"""An external RabbitMQ cluster as TrustFleet's device broker (ADR 0024).

The operator runs the nodes (MQTT plugin on TLS 1.3 with ``ssl_cert_login`` from the CN, CRL
checks over a hashed CRL folder); TrustFleet attaches to them. Through the management API it
keeps one user per active device (no password: certificate login only) with the permissions of
:func:`~trustfleet.broker.rabbitmq._rules.device_permissions`, narrows a quarantined device's,
and closes a revoked device's connections on every node. It writes the device CAs and their
CRLs into each node's trust folder, which the nodes read: the CRL folder at each handshake, the
CA bundle when a listener starts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives import serialization

from trustfleet.broker._files import write_atomic
from trustfleet.broker._port import SyncReport
from trustfleet.broker._trust import BrokerCa, load_ca
from trustfleet.broker.rabbitmq._mgmt import ManagementApi, ManagementEndpoint
from trustfleet.broker.rabbitmq._rules import (
    DEVICE_TAG,
    crl_folder,
    device_permissions,
)
from trustfleet.errors import TrustFleetError

__all__ = ["CA_BUNDLE", "CRL_DIR", "RabbitBroker", "RabbitConfig"]

logger = logging.getLogger(__name__)

CA_BUNDLE: Final = "ca.pem"
"""In a node's trust folder: the trusted device CAs and the root (its ``cacertfile``)."""
CRL_DIR: Final = "crl"
"""In a node's trust folder: the hashed CRL folder (its ``ssl_crl_hash_dir``)."""
SESSION_POLICY: Final = "trustfleet-mqtt-sessions"
"""The policy that mirrors the MQTT plugin's session queues on every node."""
KICK_FOLLOW_UP_S: Final = 15.0
"""How long a kicked user's connections are looked for again (the API's listing lags)."""
_TOPIC_EXCHANGE: Final = "amq.topic"
_PEM = serialization.Encoding.PEM


@dataclass(frozen=True)
class RabbitConfig:
    """How to reach and feed a RabbitMQ cluster.

    Attributes:
        endpoint: The management API.
        vhost: The vhost of the devices' MQTT connections.
        trust_dirs: One trust folder per node (or one shared by all), which the node reads.
        root_ca: The root CA certificate (PEM), last in every CA bundle.
    """

    endpoint: ManagementEndpoint
    vhost: str
    trust_dirs: Sequence[Path]
    root_ca: Path


class RabbitBroker:
    """The device broker on an external RabbitMQ cluster (the same calls as Mosquitto's)."""

    def __init__(self, config: RabbitConfig) -> None:
        self.config = config
        self.api = ManagementApi(config.endpoint)
        self.failure: TrustFleetError | None = None
        self._users: set[str] | None = None  # device users as last seen or made
        self._kicked: dict[str, float] = {}  # user -> until when to close its connections

    @property
    def pid(self) -> int | None:
        """None: TrustFleet does not run the nodes."""
        return None

    def start(self, *, trust: Sequence[BrokerCa]) -> None:
        """Attach: check that a node answers, then install the trust files.

        Raises:
            Unavailable: No node answered, or one of the cluster's nodes is down.
            Config: A trust folder cannot be written.
        """
        down = [str(n.get("name")) for n in self.api.nodes() if not n.get("running")]
        if down:
            logger.warning("RabbitMQ nodes not running: %s", ", ".join(down))
        # Each MQTT session's queue is a classic queue on the node the device first reached:
        # mirrored on every node, a device whose node died can open its session on another.
        self.api.put_policy(
            self.config.vhost, SESSION_POLICY, pattern="^mqtt-subscription-", apply_to="queues",
            definition={"ha-mode": "all", "ha-sync-mode": "automatic"},
        )  # fmt: skip
        self.reload_trust(trust)

    def stop(self) -> None:
        """Detach (the nodes keep running: the operator's)."""
        self._users = None

    def reload_trust(self, trust: Sequence[BrokerCa]) -> None:
        """Write every node's CA bundle and CRL folder (each file atomically; stale CRLs go).

        Raises:
            InvalidInput: A CRL is malformed.
            VerificationFailed: A CRL is not its CA's.
            Config: A file cannot be written.
        """
        crls = crl_folder(trust)
        bundle = b"".join(ca.cert.public_bytes(_PEM) for ca in trust if ca.trusted)
        bundle += load_ca(self.config.root_ca).public_bytes(_PEM)
        for folder in self.config.trust_dirs:
            crl_dir = folder / CRL_DIR
            crl_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
            for name, pem in crls.items():
                write_atomic(crl_dir / name, pem, mode=0o644)
            for stale in crl_dir.iterdir():
                if stale.name not in crls:
                    stale.unlink(missing_ok=True)
            write_atomic(folder / CA_BUNDLE, bundle, mode=0o644)

    def reload_tls(self) -> None:
        """Nothing: the nodes' server certificates are the operator's (docs/deployment.md)."""

    def kick(self, username: str) -> None:
        """Close every connection of ``username`` on every node, now and for
        :data:`KICK_FOLLOW_UP_S` (see :meth:`follow_up`).

        Raises:
            Unavailable: The management API cannot be reached.
        """
        self._kicked[username] = time.monotonic() + KICK_FOLLOW_UP_S
        self._close(username)

    def follow_up(self) -> None:
        """Close again what was kicked lately: the management API lists an MQTT connection
        only once its first statistics arrive, so one made just before a kick is found by a
        later look. Never raises (logged)."""
        now = time.monotonic()
        for username, until in list(self._kicked.items()):
            if now > until:
                del self._kicked[username]
                continue
            try:
                self._close(username)
            except TrustFleetError as exc:
                logger.info("follow-up kick of %s: %s", username, exc.one_line())

    def _close(self, username: str) -> None:
        for name in self.api.connections_of(username):
            self.api.close_connection(name, reason="closed by TrustFleet")
            logger.info("closed %s's connection %s", username, name)

    def admit(self, device_id: str, *, quarantined: bool = False) -> None:
        """Create the device's user with its permissions (again: the same result).

        Raises:
            Config: Not a device id.
            Unavailable: The management API cannot be reached.
        """
        rules = device_permissions(device_id, quarantined=quarantined)
        vhost = self.config.vhost
        self.api.put_user(device_id, tags=[DEVICE_TAG])
        self.api.set_permissions(
            vhost, device_id, configure=rules.configure, write=rules.write, read=rules.read
        )
        self._topic_rules(device_id, quarantined=quarantined)
        if self._users is not None:
            self._users.add(device_id)

    def remove(self, device_id: str) -> None:
        """Delete the device's user and close its connections.

        Raises:
            Unavailable: The management API cannot be reached.
        """
        self.api.delete_user(device_id)
        self.kick(device_id)
        if self._users is not None:
            self._users.discard(device_id)

    def sync_devices(self, active: Iterable[str]) -> SyncReport:
        """Make the device users those of ``active`` (a user TrustFleet did not tag is left).

        Raises:
            Unavailable: The management API cannot be reached.
        """
        wanted = set(active)
        if self._users is None:
            self._users = self.api.users(tag=DEVICE_TAG)
        added = sorted(wanted - self._users)
        removed = sorted(self._users - wanted)
        for device_id in added:
            self.admit(device_id)
        for device_id in removed:
            self.remove(device_id)
        return SyncReport(added=tuple(added), removed=tuple(removed))

    def quarantine(self, device_id: str) -> None:
        """Keep the device to its ``ota/`` and ``attest/`` topics; its live connections are
        closed so that it comes back under the narrower permissions.

        Raises:
            Config: Not a device id.
            Unavailable: The management API cannot be reached.
        """
        self._topic_rules(device_id, quarantined=True)
        self.kick(device_id)
        logger.info("quarantined %s on RabbitMQ", device_id)

    def release(self, device_id: str) -> None:
        """End a quarantine (its connections are closed: they come back with every topic).

        Raises:
            Config: Not a device id.
            Unavailable: The management API cannot be reached.
        """
        self._topic_rules(device_id, quarantined=False)
        self.kick(device_id)

    def quarantined(self) -> set[str]:
        """The device users whose topic permissions are the quarantine's.

        Raises:
            Unavailable: The management API cannot be reached.
        """
        found: set[str] = set()
        for entry in self.api.topic_permissions(self.config.vhost):
            user = str(entry.get("user", ""))
            if entry.get("exchange") != _TOPIC_EXCHANGE:
                continue
            try:
                narrowed = device_permissions(user, quarantined=True).topic_write
            except TrustFleetError:
                continue  # not a device user
            if entry.get("write") == narrowed:
                found.add(user)
        return found

    def _topic_rules(self, device_id: str, *, quarantined: bool) -> None:
        rules = device_permissions(device_id, quarantined=quarantined)
        self.api.set_topic_permissions(
            self.config.vhost, device_id, exchange=_TOPIC_EXCHANGE,
            write=rules.topic_write, read=rules.topic_read,
        )  # fmt: skip
