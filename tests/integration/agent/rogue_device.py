"""A device that misbehaves, run as a child process by test_agent_isolation.py.

It connects exactly as the agent does (awscrt MQTT 5, TLS 1.3, its LDevID with the key inside its
SoftHSM2 token), then tries to read and write outside its namespace. It prints one JSON line
when subscribed ("ready"), then, after a line on stdin, one JSON document of what it received.
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
from pathlib import Path

from awscrt import mqtt5

from trustfleet.agent._tls import client_tls_context, token_key
from trustfleet.agent.settings import load_device_settings, require_mqtt
from trustfleet.errors import Unavailable
from trustfleet.sim.process import wait_until

WAIT_S = 20.0


def main(device_dir: str, other_id: str) -> int:
    settings = load_device_settings(Path(device_dir))
    mqtt = require_mqtt(settings)
    me = settings.device.id
    ctx = client_tls_context(
        settings, client_cert=settings.path(settings.identity.ldevid), key=token_key(settings)
    )
    received: list[str] = []
    connected = threading.Event()
    client = mqtt5.Client(
        mqtt5.ClientOptions(
            host_name=mqtt.host or "localhost",
            port=mqtt.port,
            tls_ctx=ctx,
            connect_options=mqtt5.ConnectPacket(client_id=me, keep_alive_interval_sec=30),
            on_publish_callback_fn=lambda data: received.append(data.publish_packet.topic),
            on_lifecycle_event_connection_success_fn=lambda _d: connected.set(),
            disable_metrics=True,  # else awscrt sends a username; the broker wants none or the CN
        )
    )
    client.start()
    if not connected.wait(WAIT_S):
        print(json.dumps({"error": "not connected"}), flush=True)
        return 1
    filters = [f"tf/v1/d/{other_id}/#", "#", "$SYS/#", f"tf/v1/d/{me}/cmd"]
    subscription = mqtt5.SubscribePacket(
        subscriptions=[
            mqtt5.Subscription(topic_filter=f, qos=mqtt5.QoS.AT_LEAST_ONCE) for f in filters
        ]
    )
    client.subscribe(subscription).result(WAIT_S)
    forged = mqtt5.PublishPacket(
        topic=f"tf/v1/d/{other_id}/cmd",
        payload=b'{"id":"x","name":"ping"}',
        qos=mqtt5.QoS.AT_LEAST_ONCE,
    )
    own = mqtt5.PublishPacket(
        topic=f"tf/v1/d/{me}/telemetry", payload=b'{"marker":"own"}', qos=mqtt5.QoS.AT_LEAST_ONCE
    )
    client.publish(forged).result(WAIT_S)
    client.publish(own).result(WAIT_S)
    print(json.dumps({"ready": True}), flush=True)
    sys.stdin.readline()
    # The test's command to our own cmd topic may still be on its way (a loaded machine):
    # wait for it, bounded, so the report does not race the delivery.
    with contextlib.suppress(Unavailable):
        wait_until(
            lambda: f"tf/v1/d/{me}/cmd" in received, timeout_s=WAIT_S, what="cmd", poll_s=0.05
        )
    client.stop()
    print(json.dumps({"received": received}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
