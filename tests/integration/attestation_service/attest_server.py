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
from dataclasses import dataclass
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


@dataclass
class MqttDevice:
    """A device's MQTT side through mosquitto_pub / mosquitto_sub with its LDevID."""

    device_id: str
    cert: Path
    key: Path
    port: int
    ca_bundle: Path

    def args(self, suffix: str) -> list[str]:
        return [
            "-h",
            "localhost",
            "-p",
            str(self.port),
            "--cafile",
            str(self.ca_bundle),
            "--tls-version",
            "tlsv1.3",
            "--cert",
            str(self.cert),
            "--key",
            str(self.key),
            "-V",
            "mqttv5",
            "-i",
            f"{self.device_id}-{suffix}",
        ]

    def pub(self, leaf: str, payload: str | bytes) -> None:
        text = payload.decode() if isinstance(payload, bytes) else payload
        topic = f"tf/v1/d/{self.device_id}/{leaf}"
        result = subprocess.run(
            [
                "mosquitto_pub",
                *self.args(f"pub-{time.monotonic_ns()}"),
                "-q",
                "1",
                "-t",
                topic,
                "-m",
                text,
            ],
            capture_output=True,
            text=True,
            timeout=CLIENT_TIMEOUT_S,
            check=False,
        )
        assert result.returncode == 0, result.stderr

    def first_of(self, leaves: list[str], publish: Callable[[], None]) -> str:
        """Subscribe to ``leaves``, run ``publish``, return the first message that arrives."""
        topics = [a for leaf in leaves for a in ("-t", f"tf/v1/d/{self.device_id}/{leaf}")]
        proc = subprocess.Popen(
            [
                "stdbuf",
                "-oL",
                "mosquitto_sub",
                *self.args(f"probe-{time.monotonic_ns()}"),
                "-q",
                "1",
                "-C",
                "1",
                "-W",
                "8",
                "-d",
                *topics,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        assert proc.stdout is not None
        lines: list[str] = []
        for line in proc.stdout:  # wait for the SUBACK before publishing
            lines.append(line)
            if "SUBACK" in line:
                break
        publish()
        out, _ = proc.communicate(timeout=CLIENT_TIMEOUT_S)
        return "".join(lines) + out


class ChallengeListener:
    """The device's live subscription to its challenges (a background mosquitto_sub)."""

    def __init__(self, device: MqttDevice) -> None:
        topic = f"tf/v1/d/{device.device_id}/attest/challenge"
        self.proc = subprocess.Popen(
            [
                "stdbuf",
                "-oL",
                "mosquitto_sub",
                *device.args(f"challenges-{time.monotonic_ns()}"),
                "-d",
                "-q",
                "1",
                "-t",
                topic,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.messages: queue.Queue[dict[str, Any]] = queue.Queue()
        self.subscribed = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        assert self.subscribed.wait(CLIENT_TIMEOUT_S), "the challenge subscription failed"

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if "SUBACK" in line:
                self.subscribed.set()
            elif line.strip().startswith("{"):
                self.messages.put(json.loads(line))

    def next(self, timeout_s: float = 20.0) -> dict[str, Any]:
        return self.messages.get(timeout=timeout_s)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)
