"""Fixtures of the ingest tests: a real ``trustfleet server run`` with its broker and ingest.

* ``fleet`` (module): a server home made by ``trustfleet server init --mqtt-port``, with
  ``ingest_workers = 2``, served by ``trustfleet server run`` in its own session; enrolled
  software devices come from :meth:`Fleet.new_device` (EST through the real HTTPS API).
* ``Fleet.pub`` / ``Fleet.sub``: ``mosquitto_pub`` / ``mosquitto_sub`` (MQTT 5) as
  independent device clients.
"""

from __future__ import annotations

import functools
import json
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from support import waiting
from support.server import (
    TRUSTFLEET,
    RunningServer,
    _wait_ready,
    enroll_software,
    make_software_device,
    run_cli,
)
from support.tools import require_tools
from trustfleet.sim.process import free_port, stop_group

CLIENT_TIMEOUT_S = 20
READY_TIMEOUT_S = 90
WAIT_S = 30.0
STOP_TIMEOUT_S = 30.0

wait_for = functools.partial(waiting.wait_for, timeout_s=WAIT_S)
"""Poll a check until it returns something truthy (bounded by :data:`WAIT_S`); that value."""


@dataclass(frozen=True)
class Identity:
    """A device's LDevID and software key."""

    device_id: str
    cert: Path
    key: Path


@dataclass
class Fleet:
    server: RunningServer
    mqtt_port: int
    work: Path
    _rt: Any = field(default=None, repr=False)

    def new_device(self, prefix: str = "dev") -> Identity:
        device = make_software_device(self.server, self.work, prefix=prefix)
        ldevid, key = enroll_software(self.server, device, self.work)
        return Identity(device.device_id, ldevid, key)

    def _args(self, who: Identity, client_id: str | None = None) -> list[str]:
        client_id = client_id or who.device_id  # the broker accepts only the certificate CN
        return [
            "-h", "localhost", "-p", str(self.mqtt_port), "--cafile", str(self.server.ca_bundle),
            "--tls-version", "tlsv1.3", "--cert", str(who.cert), "--key", str(who.key),
            "-V", "mqttv5", "-i", client_id,
        ]  # fmt: skip

    def pub(
        self, who: Identity, kind: str, payloads: list[str]
    ) -> subprocess.CompletedProcess[str]:
        """Publish each payload (QoS 1) on the device's own topic, over one connection.

        One payload goes with ``-m`` (mosquitto_pub then fails on a refused handshake
        instead of reconnecting, as it does in ``-l`` mode).
        """
        topic = f"tf/v1/d/{who.device_id}/{kind}"
        single = len(payloads) == 1
        mode = ["-m", payloads[0]] if single else ["-l"]
        return subprocess.run(
            ["mosquitto_pub", *self._args(who), "-q", "1", "-t", topic, *mode],
            input=None if single else "".join(p + "\n" for p in payloads),
            capture_output=True,
            text=True,
            timeout=CLIENT_TIMEOUT_S,
            check=False,
        )

    def sub(self, who: Identity, client_id: str) -> subprocess.Popen[str]:
        """A live mosquitto_sub of the device on its own cmd topic (debug output)."""
        args = ["stdbuf", "-oL", "mosquitto_sub", *self._args(who, client_id), "-d", "-q", "1"]
        args += ["-W", "60", "-t", f"tf/v1/d/{who.device_id}/cmd"]
        return subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,
        )  # fmt: skip

    @property
    def rt(self) -> Any:
        if self._rt is None:
            from trustfleet.services.runtime import Runtime
            from trustfleet.settings import load_server_settings

            self._rt = Runtime.open(load_server_settings(self.server.home))
        return self._rt

    def rows(self, device_id: str) -> list[Any]:
        with self.rt.uow.begin(read_only=True) as tx:
            return tx.telemetry.list_for_device(device_id, limit=1000)

    def device(self, device_id: str) -> Any:
        with self.rt.uow.begin(read_only=True) as tx:
            return tx.devices.require(device_id)

    @property
    def broker_log(self) -> Path:
        return self.server.home / "broker" / "mosquitto.log"

    def close(self) -> None:
        if self._rt is not None:
            self._rt.close()


def telemetry(seq: int, **metrics: float) -> str:
    """A valid telemetry payload, stamped with the real current time (the service checks it)."""
    return json.dumps({"ts": datetime.now(UTC).isoformat(), "seq": seq, "metrics": metrics})


def events(fleet: Fleet, type_: str, subject: str) -> list[Any]:
    """The security events of one type about one subject."""
    with fleet.rt.uow.begin(read_only=True) as tx:
        return tx.events.list(limit=1000, type=type_, subject=subject)


def process_tree(root: int) -> list[int]:
    """``root`` and every descendant, from /proc (Mosquitto has its own session)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    tree, frontier = [root], [root]
    while frontier:
        children = [pid for pid, ppid in parents.items() if ppid in frontier]
        tree += children
        frontier = children
    return tree


def start_server(base: Path, *, ingest_workers: int) -> tuple[RunningServer, int]:
    """``server init --mqtt-port`` + ``server run --mqtt-port``; waits for HTTPS and ingest."""
    require_tools(
        "mosquitto_pub",
        "mosquitto_sub",
        "stdbuf",
        hint="apt-get install mosquitto-clients coreutils",
    )
    require_tools("mosquitto", hint="apt-get install mosquitto")
    port, mqtt_port = free_port(), free_port()
    home = base / "home"
    init = run_cli(
        "server", "init", "--home", home, "--api-port", str(port), "--mqtt-port", str(mqtt_port)
    )
    assert init.returncode == 0, init.stderr
    toml = home / "trustfleet.toml"
    text = re.sub(
        r"(?m)^ingest_workers = \d+", f"ingest_workers = {ingest_workers}", toml.read_text()
    )
    # ingest.rejected events after 2 s instead of minutes, so a test can wait for them.
    text = re.sub(r"(?m)^rejected_event_window_s = \d+", "rejected_event_window_s = 2", text)
    # The tests publish hundreds of messages at once: above the broker's default device rate.
    text = re.sub(r"(?m)^device_burst = \d+", "device_burst = 10000", text)
    toml.write_text(text)
    log = base / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(TRUSTFLEET), "server", "run", "--home", str(home), "--mqtt-port", str(mqtt_port)],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    server = RunningServer(home=home, port=port, process=process, log=log)
    try:
        _wait_ready(server, READY_TIMEOUT_S)
        line = wait_for(
            lambda: "serving https://" in log.read_text() and log.read_text(),
            timeout_s=READY_TIMEOUT_S,
            what="the readiness line",
        )
    except BaseException:
        stop_group(process, timeout_s=STOP_TIMEOUT_S)
        raise
    print(line.strip())
    assert f":{mqtt_port}" in line and "not subscribed" not in line, line
    return server, mqtt_port


def stop_server(server: RunningServer) -> None:
    stop_group(server.process, timeout_s=STOP_TIMEOUT_S)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    base = tmp_path_factory.mktemp("ingest")
    server, mqtt_port = start_server(base, ingest_workers=2)
    work = base / "work"
    work.mkdir()
    fleet = Fleet(server=server, mqtt_port=mqtt_port, work=work)
    try:
        yield fleet
    finally:
        fleet.close()
        stop_server(server)
