"""The attestation scheduler on RabbitMQ (``[broker] kind = "rabbitmq"``; ADR 0024).

Boot announcements (``agent.started`` events) come from the quorum queue ``[rabbitmq]
attest_queue`` (bound like the MQTT ``attest`` group's shared subscription); challenges go out
through ``amq.topic`` with publisher confirms. Scheduling is
:class:`~trustfleet.server._attest_side.AttestScheduler`'s.
"""

from __future__ import annotations

import logging
import threading
from typing import Final

from trustfleet.errors import Unavailable
from trustfleet.server._attest_side import AttestScheduler
from trustfleet.services.amqp_client import AmqpEndpoint, AmqpPublisher, Delivery, consume_forever
from trustfleet.wire import ATTEST_GROUP, group_filters

__all__ = ["AmqpAttestScheduler"]

logger = logging.getLogger(__name__)

JOIN_S: Final = 10.0
_PREFETCH: Final = 100


class AmqpAttestScheduler(AttestScheduler):
    """An :class:`AttestScheduler` that hears boots from a queue and publishes over AMQP."""

    _publisher: AmqpPublisher | None = None

    def run(self, stop: threading.Event) -> None:
        """Consume boot announcements, publish challenges, schedule until ``stop``."""
        endpoint = AmqpEndpoint.from_settings(self.rt.settings)
        self._publisher = AmqpPublisher(endpoint)
        consumer = threading.Thread(
            target=consume_forever,
            args=(endpoint,),
            kwargs={
                "queue": self.rt.settings.rabbitmq.attest_queue,
                "topic_filters": group_filters(ATTEST_GROUP),
                "prefetch": _PREFETCH,
                "on_delivery": self._on_delivery,
                "on_consuming": lambda on: self.subscribed.set() if on else None,
                "stop": stop,
            },
            name="attest-amqp",
            daemon=True,
        )
        consumer.start()
        try:
            while not stop.wait(self.rt.settings.attestation.poll_s):
                if self.subscribed.is_set():
                    self.tick()
        finally:
            consumer.join(timeout=JOIN_S)
            self._publisher.close()

    def _on_delivery(self, delivery: Delivery) -> None:
        self.note_boot(delivery.topic, delivery.body)
        delivery.ack()  # a boot is a hint: the schedule challenges the device anyway

    def _send(self, device_id: str, topic: str, payload: bytes) -> None:
        if self._publisher is None:
            return
        try:
            self._publisher.publish(topic, payload)
        except Unavailable as exc:  # the challenge will count as missed
            logger.warning("challenge to %s: %s", device_id, exc.one_line())
