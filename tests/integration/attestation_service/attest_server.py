"""A real ``trustfleet server run`` for the attestation tests, and a device talking MQTT.

The device's network identity is a software LDevID from the real EST endpoint (the test
harness's ``SoftwareDevice``); its TPM is a real swtpm the test drives (attestkit.py).
"""

from __future__ import annotations

import json
import queue
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from support.server import (
    TRUSTFLEET,
    RunningServer,
    _stop,
    _wait_ready,
    free_port,
    override_settings,
    run_cli,
)

CLIENT_TIMEOUT_S = 20
READY_TIMEOUT_S = 90


def start_server(base: Path, *, cas_pem: bytes) -> tuple[RunningServer, int]:
    """A home with the TPM vendor's CAs trusted, served by ``server run``."""
    for tool in ("mosquitto_pub", "mosquitto_sub", "stdbuf"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (apt-get install mosquitto-clients coreutils)")
    port, mqtt_port = free_port(), free_port()
    home = base / "home"
    init = run_cli(
        "server", "init", "--home", home, "--api-port", str(port), "--mqtt-port", str(mqtt_port)
    )
    assert init.returncode == 0, init.stderr
    (home / "public" / "tpm-manufacturer-cas.pem").write_bytes(cas_pem)
    override_settings(home, {"attestation.poll_s": "0.2"})
    log = base / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(TRUSTFLEET), "server", "run", "--home", str(home), "--mqtt-port", str(mqtt_port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = RunningServer(home=home, port=port, process=process, log=log)
    try:
        _wait_ready(server, READY_TIMEOUT_S)
        wait_for(
            lambda: "serving https://" in log.read_text(),
            what="readiness",
            timeout_s=READY_TIMEOUT_S,
        )
    except BaseException:
        _stop(process)
        raise
    return server, mqtt_port


def wait_for(check: Callable[[], Any], *, timeout_s: float = 30.0, what: str) -> Any:
    """Poll ``check`` until it returns something truthy (bounded); that value."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


class MqttDevice:
    """A device's MQTT side: one paho-mqtt connection with its LDevID (not our client code).

    One connection, as on a real device: the broker accepts only the device id as client id, so
    a second connection would take the first over (docs/mqtt.md). Subscriptions are made again
    after every reconnect (a release at the broker disconnects the device).
    """

    def __init__(self, device_id: str, cert: Path, key: Path, port: int, ca_bundle: Path) -> None:
        import paho.mqtt.client as mqtt

        self.device_id = device_id
        self._lock = threading.Lock()
        self._topics: set[str] = set()
        self._inbox: dict[str, queue.Queue[str]] = {}
        self._connected = threading.Event()
        self._client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=device_id, protocol=mqtt.MQTTv5
        )
        self._client.tls_set(ca_certs=str(ca_bundle), certfile=str(cert), keyfile=str(key))
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = lambda *_a: self._connected.clear()
        self._client.on_message = self._on_message
        self._client.reconnect_delay_set(min_delay=0.2, max_delay=2)
        self._client.connect("localhost", port, keepalive=30)
        self._client.loop_start()
        assert self._connected.wait(CLIENT_TIMEOUT_S), "the device did not connect"

    def _on_connect(self, client: Any, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        if getattr(rc, "is_failure", False):
            return
        with self._lock:
            topics = sorted(self._topics)
        for topic in topics:
            client.subscribe(topic, qos=1)
        self._connected.set()

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        with self._lock:
            box = self._inbox.get(msg.topic)
        if box is not None:
            box.put(msg.payload.decode(errors="replace"))

    def topic(self, leaf: str) -> str:
        return f"tf/v1/d/{self.device_id}/{leaf}"

    def subscribe(self, leaf: str) -> queue.Queue[str]:
        """Subscribe (QoS 1) to one of the device's topics; its messages arrive in the queue."""
        topic = self.topic(leaf)
        box: queue.Queue[str] = queue.Queue()
        done = threading.Event()
        with self._lock:
            self._topics.add(topic)
            self._inbox[topic] = box
        previous = self._client.on_subscribe
        self._client.on_subscribe = lambda *_a: done.set()
        try:
            self._client.subscribe(topic, qos=1)
            assert done.wait(CLIENT_TIMEOUT_S), f"no SUBACK for {topic}"
        finally:
            self._client.on_subscribe = previous
        return box

    def unsubscribe(self, leaf: str) -> None:
        topic = self.topic(leaf)
        with self._lock:
            self._topics.discard(topic)
            self._inbox.pop(topic, None)
        self._client.unsubscribe(topic)

    def pub(self, leaf: str, payload: str | bytes) -> None:
        """Publish QoS 1 on the device's own topic and wait for the PUBACK."""
        assert self._connected.wait(CLIENT_TIMEOUT_S), "the device is not connected"
        info = self._client.publish(self.topic(leaf), payload, qos=1)
        info.wait_for_publish(timeout=CLIENT_TIMEOUT_S)
        assert info.is_published(), f"no PUBACK for {leaf}"

    def first_of(self, leaves: list[str], publish: Callable[[], None]) -> str:
        """Subscribe to ``leaves``, run ``publish``, return the first message that arrives."""
        merged: queue.Queue[str] = queue.Queue()
        boxes = [self.subscribe(leaf) for leaf in leaves]
        try:
            publish()
            deadline = time.monotonic() + 8
            while time.monotonic() < deadline:
                for box in boxes:
                    try:
                        merged.put(box.get_nowait())
                    except queue.Empty:
                        continue
                if not merged.empty():
                    return merged.get()
                time.sleep(0.02)
            return ""
        finally:
            for leaf in leaves:
                self.unsubscribe(leaf)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


class ChallengeListener:
    """The device's live subscription to its challenges (on the device's one connection)."""

    def __init__(self, device: MqttDevice) -> None:
        self.device = device
        self.messages = device.subscribe("attest/challenge")

    def next(self, timeout_s: float = 20.0) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.messages.get(timeout=timeout_s))
        return result

    def close(self) -> None:
        self.device.unsubscribe("attest/challenge")
