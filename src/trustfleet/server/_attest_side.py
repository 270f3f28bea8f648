"""The attestation scheduler of ``server run``: one process, one long-lived MQTT client.

It challenges every enrolled device that has an AK: when the device announces a boot
(``agent.started`` on the device's ``events`` topic, received through its own shared
subscription ``$share/attest/…``), every ``[attestation] interval_s`` with jitter, and it
sweeps missed challenges into the quarantine policy. Evidence comes back through the ingest workers
(``…/attest/evidence``), which verify it. The process logs in to the service token only
through awscrt (never python-pkcs11: see ``services/mqtt_client.py``) and keeps nothing that
another process needs: the schedule is read from the store (the newest challenge per device).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import Future
from datetime import UTC, datetime
from typing import Any, Final

from awscrt import mqtt5

from trustfleet.crt import check_puback, map_crt_errors, suback_callback
from trustfleet.errors import TrustFleetError, Unavailable
from trustfleet.server._worker_main import run_worker
from trustfleet.services import next_due
from trustfleet.services.attestation import challenge_message, issue_challenge, sweep_missed
from trustfleet.services.mqtt_client import ServiceMqttIdentity, new_client, publish_once
from trustfleet.services.runtime import Runtime
from trustfleet.settings import ServerSettings
from trustfleet.store import ChallengeTrigger
from trustfleet.wire import ATTEST_GROUP, device_topic, shared_filters, topic_device

__all__ = ["AttestScheduler", "attest_process_main", "publish_challenge"]

logger = logging.getLogger(__name__)

MAX_PENDING_BOOTS: Final = 10_000
"""Boot announcements waiting for a challenge; more are dropped (the schedule catches up)."""
PUBLISH_TIMEOUT_S: Final = 15.0
_PAGE: Final = 1000


class AttestScheduler:
    """Issues and publishes challenges; sweeps missed ones.

    Args:
        rt: The runtime (store only).
        port: The broker port.
        now: The clock.
    """

    def __init__(
        self,
        rt: Runtime,
        *,
        port: int,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.rt = rt
        self.subscribed = threading.Event()
        self._now = now
        self._ident = ServiceMqttIdentity.from_settings(rt.settings, port=port)
        self._client: mqtt5.Client | None = None
        self._boots: set[str] = set()
        self._lock = threading.Lock()

    def run(self, stop: threading.Event) -> None:
        """Connect, subscribe to boot announcements and schedule until ``stop``."""
        self._client = new_client(
            self._ident,
            client_id=f"{self._ident.identity}-attest-{os.getpid()}-{secrets.token_hex(4)}",
            on_publish=self._on_publish,
            on_connected=self._subscribe,
        )
        self._client.start()
        try:
            while not stop.wait(self.rt.settings.attestation.poll_s):
                if self.subscribed.is_set():
                    self.tick()
        finally:
            self._client.stop()

    def tick(self) -> None:
        """Challenge announced boots and due devices, then sweep missed challenges."""
        now = self._now()
        with self._lock:
            boots, self._boots = self._boots, set()
        for device_id in sorted(boots):
            self._challenge(device_id, "boot", now)
        try:
            for device_id in self._due(now):
                if device_id not in boots:
                    self._challenge(device_id, "schedule", now)
            quarantined = sweep_missed(self.rt, now=now)
        except TrustFleetError as exc:
            logger.warning("attestation schedule failed: %s", exc.one_line())
            return
        if quarantined:
            logger.warning("quarantined for missed attestation: %s", quarantined)

    def _due(self, now: datetime) -> list[str]:
        settings = self.rt.settings.attestation
        due: list[str] = []
        offset = 0
        while True:
            with self.rt.uow.begin(read_only=True) as tx:
                page = tx.attestation.last_challenges(limit=_PAGE, offset=offset)
            for device_id, last in page.items():
                at = next_due(
                    device_id,
                    last,
                    interval_s=settings.interval_s,
                    jitter_fraction=settings.jitter_fraction,
                )
                if at is None or at <= now:
                    due.append(device_id)
            if len(page) < _PAGE:
                return due
            offset += _PAGE

    def _challenge(self, device_id: str, trigger: ChallengeTrigger, now: datetime) -> None:
        try:
            challenge = issue_challenge(self.rt, device_id=device_id, now=now, trigger=trigger)
        except TrustFleetError as exc:
            logger.info("no %s challenge for %s: %s", trigger, device_id, exc.one_line())
            return
        topic, payload = challenge_message(device_id, challenge)
        self._send(device_id, topic, payload)

    def _send(self, device_id: str, topic: str, payload: bytes) -> None:
        """Publish a challenge (QoS 1); a failure is logged: the challenge counts as missed."""
        client = self._client
        if client is None:
            return
        packet = mqtt5.PublishPacket(topic=topic, payload=payload, qos=mqtt5.QoS.AT_LEAST_ONCE)
        try:
            with map_crt_errors(f"publish the challenge to {device_id}"):
                client.publish(packet).add_done_callback(lambda f: _log_puback(f, device_id))
        except Unavailable as exc:  # a stopped client: the challenge will count as missed
            logger.warning("%s", exc.one_line())

    # -- awscrt's thread ----------------------------------------------------------------

    def _subscribe(self) -> None:
        client = self._client
        if client is None:
            return
        packet = mqtt5.SubscribePacket(
            subscriptions=[
                mqtt5.Subscription(topic_filter=topic, qos=mqtt5.QoS.AT_LEAST_ONCE)
                for topic in shared_filters(ATTEST_GROUP)
            ]
        )
        client.subscribe(packet).add_done_callback(
            suback_callback(what="the attest subscription", on_granted=self._subscribed)
        )

    def _subscribed(self, _codes: list[int]) -> None:
        self.subscribed.set()

    def _on_publish(self, data: mqtt5.PublishReceivedData) -> None:
        packet = data.publish_packet
        self.note_boot(packet.topic or "", bytes(packet.payload or b""))

    def note_boot(self, topic: str, payload: bytes) -> None:
        """Remember a device's ``agent.started`` event: it gets a challenge at the next tick."""
        device_id = topic_device(topic)
        if device_id is None or len(payload) > self.rt.settings.broker.max_payload_bytes:
            return
        try:
            body = json.loads(payload)
        except (ValueError, RecursionError):
            return
        if isinstance(body, dict) and body.get("type") == "agent.started":
            with self._lock:
                if len(self._boots) < MAX_PENDING_BOOTS:
                    self._boots.add(device_id)


def _log_puback(future: Future[Any], device_id: str) -> None:
    try:
        with map_crt_errors(f"publish the challenge to {device_id}"):
            result = future.result()
        check_puback(result, what=f"the challenge to {device_id}")
    except Unavailable as exc:  # the challenge will count as missed
        logger.warning("%s", exc.one_line())


def publish_challenge(
    settings: ServerSettings,
    device_id: str,
    payload: bytes,
    *,
    port: int | None = None,
    timeout_s: float = PUBLISH_TIMEOUT_S,
) -> None:
    """Publish one challenge with a short-lived client (``trustfleet attest run``).

    Raises:
        Unavailable: The broker cannot be reached or did not acknowledge in time.
    """
    try:
        publish_once(
            settings,
            device_topic(device_id, "attest/challenge"),
            payload,
            port=port,
            timeout_s=timeout_s,
            what=f"the challenge to {device_id}",
        )
    except Unavailable as exc:
        raise Unavailable(exc.message, hint=exc.hint, code="attestation.mqtt") from exc


def attest_process_main(home: str, port: int) -> None:
    """Entry point of the attestation scheduler process (``multiprocessing`` spawn target)."""

    def loop(rt: Runtime, stop: threading.Event) -> None:
        if rt.settings.broker.kind == "rabbitmq":
            from trustfleet.server._attest_amqp import AmqpAttestScheduler  # noqa: PLC0415

            AmqpAttestScheduler(rt, port=port).run(stop)
        else:
            AttestScheduler(rt, port=port).run(stop)

    run_worker(home, loop, role="attestation")
