"""The fleet service's side of benchmarks/fleet.py on RabbitMQ: AMQP consumers of device telemetry.

Run as a script, driven over stdin/stdout by benchmarks/fleet.py like ``_mqttload.py service``
(one JSON object per line)::

    python _amqpload.py CONFIG.json

CONFIG names the nodes' AMQP URLs, the user and password, the queue, the MQTT filters it is
bound for, the prefetch and the mode:

* ``trustfleet``: the service's own consumer (``trustfleet.services.amqp_client``:
  ``consume_forever`` on a durable *quorum* queue, every message acknowledged one by one from
  another thread, as the ingest workers do after their batch commits);
* ``bare``: what an application on a stock broker would do: a plain pika consumer of a
  *classic* queue acknowledging on its own thread.

Commands: ``connect`` (start consuming; answer once the consumer is registered), ``reset``,
``stats`` (received, unique, duplicates, latency percentiles from the payload's ``ts``),
``status``, ``wait_all`` (the consumer is consuming again), ``quit``.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

from _received import Received, rss_kib

from trustfleet.services.amqp_client import (
    AmqpEndpoint,
    Delivery,
    connect,
    consume_forever,
)
from trustfleet.wire import amqp_routing_key, topic_of_routing_key

_POLL_S = 0.2


class Sink:
    """What the consumer received (:class:`Received` under a lock: consumer and command
    threads), and whether it is consuming."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.inbox = Received()
        self.consuming = threading.Event()

    def take(self, topic: str, body: bytes) -> None:
        now = time.time()
        with self.lock:
            self.inbox.take(topic, body, now)

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {**self.inbox.stats(), "suback_codes": []}

    def reset(self) -> None:
        with self.lock:
            self.inbox.reset()


def _endpoint(cfg: dict[str, Any]) -> AmqpEndpoint:
    return AmqpEndpoint(
        urls=tuple(cfg["urls"]),
        username=cfg["username"],
        password=cfg["password"],
        vhost="/",
        cafile=None,
        timeout_s=10.0,
    )


def _trustfleet(cfg: dict[str, Any], sink: Sink, stop: threading.Event) -> None:
    def deliver(delivery: Delivery) -> None:
        sink.take(delivery.topic, delivery.body)
        delivery.ack()

    def consuming(on: bool) -> None:
        (sink.consuming.set if on else sink.consuming.clear)()

    consume_forever(
        _endpoint(cfg),
        queue=cfg["queue"],
        topic_filters=cfg["filters"],
        prefetch=int(cfg["prefetch"]),
        on_delivery=deliver,
        on_consuming=consuming,
        stop=stop,
    )


def _bare(cfg: dict[str, Any], sink: Sink, stop: threading.Event) -> None:
    conn = connect(_endpoint(cfg))
    try:
        channel = conn.channel()
        channel.queue_declare(cfg["queue"], durable=True)  # RabbitMQ's default: classic
        for topic_filter in cfg["filters"]:
            channel.queue_bind(
                cfg["queue"], "amq.topic", routing_key=amqp_routing_key(topic_filter)
            )
        channel.basic_qos(prefetch_count=int(cfg["prefetch"]))

        def deliver(ch: Any, method: Any, _properties: Any, body: bytes) -> None:
            sink.take(topic_of_routing_key(method.routing_key), body)
            ch.basic_ack(method.delivery_tag)

        channel.basic_consume(cfg["queue"], on_message_callback=deliver)
        sink.consuming.set()
        while not stop.is_set():
            conn.process_data_events(time_limit=_POLL_S)
    finally:
        sink.consuming.clear()
        if conn.is_open:
            conn.close()


def _answer(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: _amqpload.py CONFIG.json", file=sys.stderr)
        return 2
    cfg = json.loads(Path(argv[0]).read_text())
    sink = Sink()
    stop = threading.Event()
    target = _trustfleet if cfg["mode"] == "trustfleet" else _bare
    thread = threading.Thread(target=target, args=(cfg, sink, stop), daemon=True)
    t_full = 0.0

    def status() -> dict[str, Any]:
        return {
            "clients": 1,
            "connected": int(sink.consuming.is_set()),
            "t_full": t_full,
            "attempts": 1,
            "failures": 0,
            "reconnects": 0,
            "errors": 0,
            "error_samples": [],
            "rss_kib": rss_kib(),
            "cpu_s": time.process_time(),
        }

    _answer({"ready": True, "clients": 1})
    for line in sys.stdin:
        cmd = json.loads(line)
        name = cmd["cmd"]
        if name == "connect":
            t0 = time.time()
            thread.start()
            sink.consuming.wait(float(cfg["connect_timeout_s"]))
            t_full = time.time()
            _answer({**status(), "t_start": t0, "last_connack": t_full, "p50_ms": None,
                     "p99_ms": None})  # fmt: skip
        elif name in ("status", "wait_all"):
            if name == "wait_all":
                sink.consuming.wait(float(cmd["timeout_s"]))
            _answer(status())
        elif name == "reset":
            sink.reset()
            _answer({"ok": True})
        elif name == "stats":
            _answer(sink.stats())
        elif name == "quit":
            stop.set()
            thread.join(timeout=10)
            _answer(status())
            break
    return 0


if __name__ == "__main__":
    sys.exit(main())
