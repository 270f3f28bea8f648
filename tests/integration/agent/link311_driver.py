"""The agent's MQTT 3.1.1 link in a child process, driven by test_agent_mqtt311.py.

SoftHSM2 takes one configuration per process (ADR 0002), so the link, its TLS context and the
device token live here, not in the test process. The link is the real
:class:`~trustfleet.agent.link311.Mqtt311Link` with a real :class:`Outbox`, built as the agent
builds it. One JSON request per line on stdin, one JSON answer per line on stdout; the link's
log goes to stderr.

Usage: ``python link311_driver.py DEVICE_DIR '{"port": 1234, ...}'`` (``[mqtt]`` overrides).
"""

from __future__ import annotations

import gc
import json
import logging
import sys
import threading
import time
import weakref
from pathlib import Path
from typing import Any

from trustfleet.agent._tls import token_key
from trustfleet.agent.link import topic
from trustfleet.agent.link311 import Mqtt311Link
from trustfleet.agent.outbox import Message, Outbox
from trustfleet.agent.settings import load_device_settings, require_mqtt
from trustfleet.errors import Unavailable


class Driver:
    def __init__(self, device: Path, overrides: dict[str, Any]) -> None:
        self.settings = load_device_settings(device)
        self.mqtt = require_mqtt(self.settings).model_copy(update=overrides)
        self.outbox = Outbox(max_messages=1000)
        self.commands: list[str] = []
        self.changed = threading.Event()
        self.link: Mqtt311Link | None = Mqtt311Link(
            self.settings,
            mqtt=self.mqtt,
            key=token_key(self.settings),
            client_cert=self.settings.path(self.settings.identity.ldevid),
            outbox=self.outbox,
            on_command=lambda raw: self.commands.append(raw.decode()),
            on_ota_command=lambda raw: self.commands.append("ota:" + raw.decode()),
            on_change=self.changed.set,
        )

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request["op"]
        if op == "released":  # before anything here holds the link
            return {"released": self._release(timeout_s=request["timeout_s"])}
        if op == "put":
            device_id = self.settings.device.id
            for seq in request["seqs"]:
                payload = json.dumps({"seq": seq, "marker": "mqtt311"}).encode()
                self.outbox.put(Message(seq, topic(device_id, "telemetry"), payload))
        elif op == "deliver":
            self._deliver(timeout_s=request["timeout_s"])
        elif op != "state":
            return self._on_link(op, request)
        return self.state()

    def _on_link(self, op: str, request: dict[str, Any]) -> dict[str, Any]:
        link = self.link
        assert link is not None, "the link was released"
        if op == "start":
            link.start()
        elif op == "wait_connected":
            try:
                link.wait_connected(timeout_s=request["timeout_s"], poll=time.sleep)
            except Unavailable as exc:
                return {"error": exc.one_line()}
        elif op == "pump":
            return {"taken": link.pump()}
        elif op == "stop":
            started = time.monotonic()
            link.stop(timeout_s=request["timeout_s"])
            return {"stop_s": time.monotonic() - started, **self.state()}
        return self.state()

    def _deliver(self, *, timeout_s: float) -> None:
        """Pump until the outbox is empty (the agent's _deliver), bounded."""
        deadline = time.monotonic() + timeout_s
        while len(self.outbox) and time.monotonic() < deadline:
            if self.link is not None:
                self.link.pump()
            self.outbox.wait_change(0.1)

    def _release(self, *, timeout_s: float) -> bool:
        """Drop the link; whether it is garbage within ``timeout_s`` (no cycle through awscrt)."""
        assert self.link is not None
        ref = weakref.ref(self.link)
        self.link = None
        deadline = time.monotonic() + timeout_s
        while ref() is not None and time.monotonic() < deadline:
            gc.collect()
            time.sleep(0.05)
        return ref() is None

    def state(self) -> dict[str, Any]:
        link = self.link
        return {
            "connected": link.connected if link else False,
            "connections": link.connections if link else 0,
            "last_error": link.last_error if link else "",
            "queued": len(self.outbox),
            "delivered": self.outbox.delivered,
            "commands": list(self.commands),
        }


def main(device: str, overrides: str) -> int:
    logging.basicConfig(
        level=logging.DEBUG, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s"
    )
    driver = Driver(Path(device), json.loads(overrides))
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        if request["op"] == "exit":
            break
        print(json.dumps(driver.handle(request)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
