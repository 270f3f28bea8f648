"""The broker in ``server run``: start it from the home, and make revocations bite.

:class:`BrokerSide` owns the supervised Mosquitto of a server home. Its :meth:`tick` (called
by the parent's supervision loop) follows the store with a
:class:`~trustfleet.services.revocation_feed.RevocationFeed` and the CA registry: a new CRL of
any device CA, or a change in the set of device CAs (a rollover), is installed with
``reload_trust`` (new handshakes of a revoked device fail; a new CA is trusted), then every
newly revoked device is kicked (its live connections end). The revoking process only writes the
store, so any process on any host may revoke.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from trustfleet.broker import Broker, BrokerConfig, DeviceBroker
from trustfleet.broker.rabbitmq import ManagementEndpoint, RabbitBroker, RabbitConfig
from trustfleet.errors import Config, TrustFleetError
from trustfleet.services.amqp_client import AmqpEndpoint
from trustfleet.services.ca_trust import TrustVersion, device_trust, trust_version
from trustfleet.services.revocation_feed import RevocationFeed
from trustfleet.services.runtime import Runtime
from trustfleet.settings import ServerSettings

__all__ = ["BrokerSide"]

logger = logging.getLogger(__name__)

START_RETRY_S: Final = 30.0
"""How long to wait before trying again to start a broker that could not start."""
MAX_KICK_ATTEMPTS: Final = 5
_PAGE: Final = 1000
QUARANTINE_RESYNC_S: Final = 30.0
"""How often the broker's quarantines are compared with the store even when nothing changed."""


class BrokerSide:
    """Mosquitto for one server home, plus the store-to-broker revocation sync.

    Args:
        rt: The runtime of the parent process (store; device CA key for a due CRL).
        port: The device listener's port.
    """

    def __init__(self, rt: Runtime, *, port: int) -> None:
        settings = rt.settings
        self.rt = rt
        self.port = port
        self.config = BrokerConfig.for_home(
            settings.home,
            port=port,
            host=settings.broker.host,
            service_identities=(settings.broker.service_identity,),
            tls_cert=settings.broker.tls_cert,
            tls_key=settings.broker.tls_key,
            device_max_payload_bytes=settings.broker.max_payload_bytes,
            device_rate_per_s=settings.broker.device_rate_per_s,
            device_burst=settings.broker.device_burst,
            stats_interval_s=settings.monitoring.service_window_s
            if settings.monitoring.enabled
            else 0,
        )
        self.broker: DeviceBroker = (
            _rabbit(settings, root_ca=self.config.paths.root_ca)
            if settings.broker.kind == "rabbitmq"
            else Broker(self.config)
        )
        self.attached = False  # RabbitMQ: whether the last start (attach) worked
        self._next_sync = 0.0
        self.feed = RevocationFeed(rt.uow, issuer="device")
        self.error: TrustFleetError | None = None
        self._next_start = 0.0
        self._next_poll = 0.0
        self._reload_pending = False
        self._trust: TrustVersion | None = None  # what the broker's trust files hold
        self._kicks: dict[str, int] = {}
        self._applied: set[str] | None = None  # quarantines the broker holds, as last applied
        self._next_resync = 0.0

    @property
    def external(self) -> bool:
        """Whether the broker is an operator's cluster (RabbitMQ) rather than our Mosquitto."""
        return self.rt.settings.broker.kind == "rabbitmq"

    @property
    def running(self) -> bool:
        """Whether Mosquitto runs now (RabbitMQ: whether the service is attached)."""
        return self.attached if self.external else self.broker.pid is not None

    def start(self) -> bool:
        """Start Mosquitto with the current device-CA CRL; False (and logged) if it cannot."""
        self._next_start = time.monotonic() + START_RETRY_S
        try:
            self.feed.prime()  # before reading the CRL: a revocation in between is not lost
            version = trust_version(self.rt)
            self.broker.start(trust=device_trust(self.rt, now=datetime.now(UTC)))
            self._trust = version
        except TrustFleetError as exc:
            self.error = exc
            logger.error("MQTT broker not started: %s", exc.one_line())
            return False
        self.error = None
        self._applied = None
        self.attached = self.external
        if self.external:
            logger.info("attached to the RabbitMQ cluster (%s)", self.rt.settings.rabbitmq.vhost)
            self._sync_devices(force=True)
        else:
            pid, host = self.broker.pid, self.config.host
            logger.info("MQTT broker (mosquitto %s) on %s:%d", pid, host, self.port)
        self._sync_quarantines()  # the broker's dynamic state starts empty at every start
        return True

    def tick(self) -> None:
        """Retry a failed start when due; apply revocation changes every poll interval."""
        now = time.monotonic()
        if self.error is not None and self.broker.pid is None:
            if now >= self._next_start:
                self.start()
            return
        if now < self._next_poll:
            return
        self._next_poll = now + self.rt.settings.broker.revocation_poll_s
        try:
            changes = self.feed.poll()
        except TrustFleetError as exc:
            logger.warning("revocation poll failed: %s", exc.one_line())
            return
        if changes.crl_der is not None or self._reload_pending or self._trust_changed():
            self._reload()
        for device_id in changes.revoked_devices:
            self._kicks.setdefault(device_id, 0)
        self._kick_pending()
        self.broker.follow_up()
        self._sync_devices(force=bool(changes.revoked_devices))
        self._sync_quarantines()

    def stop(self) -> None:
        """Stop Mosquitto (its whole process group)."""
        self.broker.stop()

    def _trust_changed(self) -> bool:
        """Whether a device CA or one of their CRLs changed since the last install."""
        try:
            return trust_version(self.rt) != self._trust
        except TrustFleetError as exc:
            logger.warning("CA poll failed: %s", exc.one_line())
            return False

    def _reload(self) -> None:
        """Install every device CA and its current CRL (one CA, or two during a rollover)."""
        try:
            version = trust_version(self.rt)
            self.broker.reload_trust(device_trust(self.rt, now=datetime.now(UTC)))
        except TrustFleetError as exc:
            self._reload_pending = True
            logger.warning("broker CRL reload failed (will retry): %s", exc.one_line())
            return
        self._reload_pending = False
        self._trust = version
        logger.info("broker reloaded the device CAs and their CRLs %s", version)

    def _sync_quarantines(self) -> None:
        """Make the broker's quarantined devices those of the store (its source of truth).

        The broker is asked only when the store's set changed, after a start, and every
        ``QUARANTINE_RESYNC_S`` (a broker restarted by its supervisor starts empty).
        """
        try:
            with self.rt.uow.begin(read_only=True) as tx:
                wanted = {q.device_id for q in tx.attestation.quarantined()}
            due = time.monotonic() >= self._next_resync
            if wanted == self._applied and not due:
                return
            self._applied = None
            current = self.broker.quarantined()
            for device_id in sorted(wanted - current):
                self.broker.quarantine(device_id)
            for device_id in sorted(current - wanted):
                self.broker.release(device_id)
            self._applied = wanted
            self._next_resync = time.monotonic() + QUARANTINE_RESYNC_S
        except TrustFleetError as exc:
            logger.warning("quarantine sync failed (will retry): %s", exc.one_line())

    def _sync_devices(self, *, force: bool) -> None:
        """Admit the enrolled MQTT devices at the broker (RabbitMQ: their users), every
        ``[rabbitmq] device_sync_s`` or at once after a revocation."""
        if not self.external or (not force and time.monotonic() < self._next_sync):
            return
        self._next_sync = time.monotonic() + self.rt.settings.rabbitmq.device_sync_s
        try:
            report = self.broker.sync_devices(_mqtt_devices(self.rt))
        except TrustFleetError as exc:
            logger.warning("device sync with the broker failed (will retry): %s", exc.one_line())
            self._next_sync = 0.0
            return
        if report.added or report.removed:
            logger.info(
                "broker users: %d added, %d removed", len(report.added), len(report.removed)
            )

    def _kick_pending(self) -> None:
        if self._reload_pending:
            return  # kick only once new handshakes are refused, or the device comes back
        for device_id, attempts in list(self._kicks.items()):
            try:
                self.broker.kick(device_id)
            except TrustFleetError as exc:
                if attempts + 1 >= MAX_KICK_ATTEMPTS:
                    logger.error("could not kick revoked %s: %s", device_id, exc.one_line())
                    del self._kicks[device_id]
                else:
                    self._kicks[device_id] = attempts + 1
                continue
            del self._kicks[device_id]
            logger.info("revoked device %s kicked from the broker", device_id)


def _mqtt_devices(rt: Runtime) -> set[str]:
    """The enrolled devices that speak MQTT (a page of the store at a time)."""
    found: set[str] = set()
    offset = 0
    with rt.uow.begin(read_only=True) as tx:
        while True:
            page = tx.devices.list(state="enrolled", limit=_PAGE, offset=offset)
            found.update(d.id for d in page if d.protocol == "mqtt")
            if len(page) < _PAGE:
                return found
            offset += _PAGE


def _rabbit(settings: ServerSettings, *, root_ca: Path) -> RabbitBroker:
    """The RabbitMQ adapter of ``[rabbitmq]``.

    Raises:
        Config: The password file cannot be read, or no management URL is set.
    """
    rabbit = settings.rabbitmq
    if not rabbit.management_urls or not rabbit.trust_dirs:
        raise Config(
            '[broker] kind = "rabbitmq" needs [rabbitmq] management_urls and trust_dirs',
            hint="docs/deployment.md shows a whole [rabbitmq] section",
            code="broker.rabbitmq.settings",
        )
    amqp = AmqpEndpoint.from_settings(settings)
    endpoint = ManagementEndpoint(
        urls=tuple(rabbit.management_urls), username=amqp.username, password=amqp.password,
        cafile=amqp.cafile, timeout_s=rabbit.request_timeout_s,
    )  # fmt: skip
    return RabbitBroker(
        RabbitConfig(
            endpoint=endpoint,
            vhost=rabbit.vhost,
            trust_dirs=tuple(settings.path(d) for d in rabbit.trust_dirs),
            root_ca=root_ca,
        )
    )
