"""The full campaign loop on loopback: ``trustfleet server run`` + simulated devices.

* ``campaign_fleet`` (module): a server home (``server init``) with ``[campaigns] tick_s =
  0.2`` and one ingest worker, served by ``trustfleet server run`` in its own session (stopped
  by its process group), plus :data:`DEVICES` enrolled devices of model ``sim-v1`` whose
  LDevIDs come from the home's device CA (issued in one child process: one SoftHSM2
  configuration per process, ADR 0002) and three releases in the store.
* :class:`SimDevice`: a paho-mqtt (MQTT 5, TLS 1.3, its LDevID) client that answers the
  ``update`` command on ``tf/v1/d/<id>/ota/cmd`` by publishing ``ota/status`` reports, as the
  device updater does. What it answers depends on the release and on the device's wave (read
  from the store when the command arrives): ``ok``, ``fail``, ``silent`` or ``hold`` (wait
  for the release's gate, then ``ok``); the test sets the plan before creating the campaign.
"""

from __future__ import annotations

import json
import os
import re
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from support.scripts import run_script
from support.server import TRUSTFLEET, RunningServer, _wait_ready, run_cli
from support.waiting import wait_for
from trustfleet.sim.process import free_port, stop_group

DEVICES = 10
MODEL = "sim-v1"
RELEASES = ("2.0.0", "2.1.0", "2.2.0")
READY_TIMEOUT_S = 90
WAIT_S = 60.0
STOP_TIMEOUT_S = 30.0
"""Bound on waiting for something that must happen (the machine may be shared and slow)."""
HOLD_S = 180.0
"""Bound on a held device's wait for its gate."""

_ISSUE = r"""
import json, sys
from datetime import UTC, datetime
from pathlib import Path
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from trustfleet.pki import LDEVID, issue_device_certificate
from trustfleet.services._certs import record_certificate
from trustfleet.services.runtime import Runtime
from trustfleet.settings import load_server_settings

a = json.loads(sys.argv[1])
rt = Runtime.open(load_server_settings(Path(a["home"])))
now = datetime.now(UTC)
out = Path(a["out"])
with rt.uow.begin() as tx:
    for device_id in a["devices"]:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = issue_device_certificate(
            issuer=rt.issuer("device"), public_key=key.public_key(), device_id=device_id,
            profile=LDEVID, organization=rt.settings.pki.organization, now=now)
        tx.devices.add(id=device_id, model=a["model"], state="enrolled", now=now)
        record_certificate(tx, cert, issuer="device", kind="ldevid", device_id=device_id, now=now)
        (out / f"{device_id}.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        (out / f"{device_id}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    for version in a["releases"]:
        tx.releases.add(model=a["model"], version=version, min_version="1.0.0",
            image_sha256="b" * 64, image_length=1, manifest=b"{}", targets_version=1, now=now)
rt.close()
"""


def issue_devices(home: Path, out: Path, device_ids: list[str]) -> None:
    """Register enrolled devices with LDevIDs (software keys, test only) and the releases."""
    args = {"home": str(home), "out": str(out), "devices": device_ids, "model": MODEL,
            "releases": list(RELEASES)}  # fmt: skip
    run_script(_ISSUE, args)


Policy = Callable[[str, str, str], str]
"""(device id, campaign id, version) -> ``ok``, ``fail``, ``silent`` or ``hold``."""


@dataclass
class SimDevice:
    """A device on the broker that answers ``update`` like the device updater."""

    device_id: str
    cert: Path
    key: Path
    policy: Policy
    gates: dict[str, threading.Event]
    commands: list[dict[str, Any]] = field(default_factory=list)
    _seq: int = 0
    _client: Any = None
    subscribed: threading.Event = field(default_factory=threading.Event)

    def connect(self, *, port: int, ca: Path) -> None:
        import paho.mqtt.client as mqtt

        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=self.device_id, protocol=mqtt.MQTTv5
        )
        context = ssl.create_default_context(cafile=str(ca))
        context.minimum_version = ssl.TLSVersion.TLSv1_3
        context.load_cert_chain(str(self.cert), str(self.key))
        client.tls_set_context(context)
        client.on_connect = self._on_connect
        client.on_subscribe = lambda *_a, **_k: self.subscribed.set()
        client.on_message = self._on_message
        client.connect("localhost", port)
        client.loop_start()
        self._client = client

    def close(self) -> None:
        if self._client is not None:
            self._client.loop_stop()
            self._client.disconnect()

    def _on_connect(self, client: Any, *_args: Any) -> None:
        client.subscribe(f"tf/v1/d/{self.device_id}/ota/cmd", qos=1)

    def _on_message(self, _client: Any, _userdata: Any, message: Any) -> None:
        command = json.loads(message.payload)
        self.commands.append(command)
        if command.get("name") != "update":
            return
        args = command["args"]
        threading.Thread(target=self._update, args=(args,), daemon=True).start()

    def _update(self, args: dict[str, Any]) -> None:
        campaign, version = args.get("campaign"), args["version"]
        behaviour = self.policy(self.device_id, campaign or "", version)
        if behaviour == "silent":
            return
        if behaviour == "hold":
            self.report(campaign, "downloading", version=version, bytes=0, total=10)
            self.gates[version].wait(timeout=HOLD_S)
        for state in ("checking", "downloading", "installing"):
            self.report(campaign, state, version=version, bytes=10, total=10, delta=False)
        if behaviour == "fail":
            self.report(campaign, "failed", version=version, reason="image hash mismatch",
                        code="ota.download.hash")  # fmt: skip
            return
        self.report(campaign, "rebooting", version=version)
        self.report(campaign, "committed", version=version)

    def report(self, campaign: str | None, state: str, **fields: Any) -> None:
        self.publish("ota/status", {"campaign": campaign, "state": state, **fields})

    def publish(self, kind: str, fields: dict[str, Any]) -> None:
        self._seq += 1
        body = {"ts": datetime.now(UTC).isoformat(), "seq": self._seq, **fields}
        wait_for(self._client.is_connected, what=f"{self.device_id} to (re)connect")
        info = self._client.publish(f"tf/v1/d/{self.device_id}/{kind}", json.dumps(body), qos=1)
        info.wait_for_publish(timeout=WAIT_S)


@dataclass
class CampaignFleet:
    home: Path
    api_port: int
    mqtt_port: int
    base: Path
    devices: list[SimDevice]
    server: RunningServer | None = None
    plans: dict[str, dict[int, str]] = field(default_factory=dict)
    gates: dict[str, threading.Event] = field(
        default_factory=lambda: {v: threading.Event() for v in RELEASES}
    )
    _rt: Any = None

    def policy(self, device_id: str, campaign_id: str, version: str) -> str:
        """What the device does for this release: by its wave in the campaign's plan."""
        plan = self.plans.get(version, {})
        with self.rt.uow.begin(read_only=True) as tx:
            row = tx.campaigns.device(campaign_id, device_id)
        return plan.get(row.wave, "ok") if row is not None else "silent"

    def commands_for(self, campaign_id: str) -> list[dict[str, Any]]:
        return [c for dev in self.devices for c in list(dev.commands)
                if c.get("args", {}).get("campaign") == campaign_id]  # fmt: skip

    def start(self) -> None:
        """``server run`` (again) on the home; returns once HTTPS answers and ingest is ready."""
        log = self.base / f"server-{int(time.monotonic() * 1000)}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [str(TRUSTFLEET), "server", "run", "--home", str(self.home),
                 "--mqtt-port", str(self.mqtt_port)],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        self.server = RunningServer(home=self.home, port=self.api_port, process=process, log=log)
        try:
            _wait_ready(self.server, READY_TIMEOUT_S)
            wait_for(lambda: "serving https://" in log.read_text(), what="the readiness line")
        except BaseException:
            stop_group(process, timeout_s=STOP_TIMEOUT_S)
            raise

    def wait_ingest(self) -> None:
        """Until a device's heartbeat reaches the store: ingest is subscribed and writing."""
        probe = self.devices[0]
        with self.rt.uow.begin(read_only=True) as tx:
            before = tx.devices.require(probe.device_id).last_seen_at

        def seen() -> bool:
            probe.publish("events", {"type": "heartbeat", "details": {}})
            time.sleep(0.5)
            with self.rt.uow.begin(read_only=True) as tx:
                return tx.devices.require(probe.device_id).last_seen_at != before

        wait_for(seen, timeout_s=READY_TIMEOUT_S, what="ingest to store a heartbeat")

    def stop(self) -> None:
        if self.server is not None:
            stop_group(self.server.process, timeout_s=STOP_TIMEOUT_S)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_cli("campaign", *args, "--home", str(self.home))

    def cli_json(self, *args: str) -> Any:
        result = self.cli(*args, "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    @property
    def rt(self) -> Any:
        if self._rt is None:
            from trustfleet.services.runtime import Runtime
            from trustfleet.settings import load_server_settings

            self._rt = Runtime.open(load_server_settings(self.home))
        return self._rt

    def status(self, campaign_id: str) -> Any:
        from trustfleet.services.campaigns import campaign_status

        return campaign_status(self.rt, campaign_id)

    def close(self) -> None:
        for gate in self.gates.values():
            gate.set()
        for device in self.devices:
            device.close()
        if self._rt is not None:
            self._rt.close()
        self.stop()


@pytest.fixture(scope="module")
def campaign_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CampaignFleet]:
    try:
        import paho.mqtt.client  # noqa: F401
    except ImportError:
        pytest.skip("paho-mqtt is not installed (pip install paho-mqtt)")
    if not Path("/usr/sbin/mosquitto").exists() and not _which("mosquitto"):
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    base = tmp_path_factory.mktemp("campaigns")
    home, api_port, mqtt_port = base / "home", free_port(), free_port()
    init = run_cli("server", "init", "--home", home, "--api-port", str(api_port),
                   "--mqtt-port", str(mqtt_port))  # fmt: skip
    assert init.returncode == 0, init.stderr
    toml = home / "trustfleet.toml"
    text = re.sub(r"(?m)^ingest_workers = \d+", "ingest_workers = 1", toml.read_text())
    text, found = re.subn(r"(?m)^tick_s = .*$", "tick_s = 0.2", text)
    assert found == 1, "no [campaigns] tick_s in the rendered trustfleet.toml"
    toml.write_text(text)
    ids = [f"camp-{i:02d}-{os.urandom(3).hex()}" for i in range(DEVICES)]
    keys = base / "devices"
    keys.mkdir()
    issue_devices(home, keys, ids)
    fleet = CampaignFleet(home=home, api_port=api_port, mqtt_port=mqtt_port, base=base,
                          devices=[])  # fmt: skip
    try:
        fleet.start()
        for device_id in ids:
            device = SimDevice(device_id, keys / f"{device_id}.pem", keys / f"{device_id}.key",
                               fleet.policy, fleet.gates)  # fmt: skip
            device.connect(port=mqtt_port, ca=home / "public" / "ca-bundle.pem")
            fleet.devices.append(device)
        for device in fleet.devices:
            assert device.subscribed.wait(timeout=WAIT_S), device.device_id
        fleet.wait_ingest()
        yield fleet
    finally:
        fleet.close()


def _which(name: str) -> str | None:
    import shutil

    return shutil.which(name)
