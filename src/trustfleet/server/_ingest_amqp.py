"""The ingest worker fed by RabbitMQ (``[broker] kind = "rabbitmq"``; ADR 0024).

Instead of MQTT shared subscriptions, every ingest worker of every service host consumes the
durable quorum queue ``[rabbitmq] ingest_queue``, bound to ``amq.topic`` for the device topics
the ingest group stores: RabbitMQ gives each message to one consumer and keeps it, replicated
on the nodes, until that consumer acknowledges it, which happens after its batch is committed
(the same rule as the MQTT worker's PUBACK). A consumer that dies, or a node that goes away,
leaves its unacknowledged messages to the others. Batching, checks and storing are
:class:`~trustfleet.server.ingest_worker.IngestWorker`'s.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any, Final

from trustfleet.server.ingest_worker import QUEUE_PUT_TIMEOUT_S, IngestWorker
from trustfleet.services.amqp_client import AmqpEndpoint, Delivery, consume_forever
from trustfleet.wire import INGEST_GROUP, group_filters

__all__ = ["AmqpIngestWorker"]

logger = logging.getLogger(__name__)

JOIN_S: Final = 10.0


class AmqpIngestWorker(IngestWorker):
    """An :class:`IngestWorker` consuming ``[rabbitmq] ingest_queue`` over AMQP."""

    _thread: threading.Thread | None = None

    def _start_source(self, stop: threading.Event) -> None:
        rabbit = self.settings.rabbitmq
        endpoint = AmqpEndpoint.from_settings(self.settings)  # Config: before any thread
        self._thread = threading.Thread(
            target=consume_forever,
            args=(endpoint,),
            kwargs={
                "queue": rabbit.ingest_queue,
                "topic_filters": group_filters(INGEST_GROUP),
                "prefetch": rabbit.prefetch,
                "on_delivery": self._on_delivery,
                "on_consuming": self._on_consuming,
                "stop": stop,
            },
            name="ingest-amqp",
            daemon=True,
        )
        self._thread.start()

    def _stop_source(self) -> None:
        if self._thread is not None:
            self._thread.join(timeout=JOIN_S)

    def _on_consuming(self, consuming: bool) -> None:
        if consuming:
            logger.info("ingest consumes %s", self.settings.rabbitmq.ingest_queue)
            self.subscribed.set()

    def _on_delivery(self, delivery: Delivery) -> None:
        """One message from the queue (pika's thread): into the batch queue, acked later."""
        item = (delivery.topic, delivery.body, delivery.ack)
        try:
            self._queue.put(item, timeout=QUEUE_PUT_TIMEOUT_S)
        except queue.Full:
            self.counters.overflow += 1
            logger.warning("ingest queue full; dropping a message from %s", item[0])
            delivery.ack()

    def _ack(self, items: list[tuple[str, bytes, Any]]) -> None:
        for _topic, _payload, ack in items:
            if ack is not None:
                ack()
