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
from typing import Final

from trustfleet.broker import Broker, BrokerConfig
from trustfleet.errors import TrustFleetError
from trustfleet.services.ca_trust import TrustVersion, device_trust, trust_version
from trustfleet.services.revocation_feed import RevocationFeed
from trustfleet.services.runtime import Runtime

__all__ = ["BrokerSide"]

logger = logging.getLogger(__name__)

START_RETRY_S: Final = 30.0
"""How long to wait before trying again to start a broker that could not start."""
MAX_KICK_ATTEMPTS: Final = 5
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
        self.broker = Broker(self.config)
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
    def running(self) -> bool:
        """Whether Mosquitto runs now."""
        return self.broker.pid is not None

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
