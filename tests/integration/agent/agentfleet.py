"""Fixtures for the agent tests: a real server, a real Mosquitto, virtual devices in SoftHSM2.

* ``fleet`` (session): a running ``trustfleet server`` (EST), a started
  :class:`trustfleet.broker.Broker` for its home on a free loopback port, and the fleet
  service's client certificate ``svc.ingest`` (device CA) for the independent observers.
* ``fleet.device(...)``: a device provisioned with ``trustfleet factory provision`` whose
  ``device.toml`` gets an ``[mqtt]`` section pointing at the broker (or a cut-able proxy).
* ``agentkit`` (module next to this file) holds the observer, the agent process and the proxy.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.identities import SERVICE_CN, Identity, service_identity
from support.server import RunningServer, free_port, run_cli, running_server

# A short-lived LDevID for the device's own key, issued and recorded as EST would: the test
# of renewal needs a certificate that reaches 2/3 of its life within seconds. BACKDATE (5 min)
# makes every LDevID start in the past, so `now` is chosen to put the renewal point at
# `due_in_s` from now while the certificate stays valid for a while after it.
_SHORT_LDEVID_SCRIPT = r"""
import json, sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from trustfleet.pki import BACKDATE, LDEVID, issue_device_certificate
from trustfleet.services._certs import record_certificate
from trustfleet.services.runtime import Runtime
from trustfleet.settings import load_server_settings

a = json.loads(sys.argv[1])
rt = Runtime.open(load_server_settings(Path(a["home"])))
path = Path(a["ldevid"])
old = x509.load_pem_x509_certificate(path.read_bytes())
real = datetime.now(UTC)
validity = timedelta(seconds=1)
lifetime = BACKDATE + validity
issue_at = real + timedelta(seconds=a["due_in_s"]) + BACKDATE - lifetime * a["fraction"]
cert = issue_device_certificate(
    issuer=rt.issuer("device"), public_key=old.public_key(), device_id=a["device_id"],
    profile=LDEVID, organization=rt.settings.pki.organization, now=issue_at, validity=validity)
with rt.uow.begin() as tx:
    record_certificate(tx, cert, issuer="device", kind="ldevid", device_id=a["device_id"],
                       now=real)
path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
print(format(cert.serial_number, "x"))
rt.close()
"""


@dataclass
class Fleet:
    server: RunningServer
    broker: object
    broker_port: int
    service: Identity
    work: Path

    @property
    def ca_bundle(self) -> Path:
        return self.server.ca_bundle

    def device(self, *, port: int | None = None, mqtt: dict[str, object] | None = None) -> Path:
        """A freshly provisioned device folder with an ``[mqtt]`` section (not enrolled)."""
        out = self.work / f"devs-{free_port()}"
        result = run_cli("factory", "provision", "--home", self.server.home, "--out", out, "--json")
        assert result.returncode == 0, result.stderr
        directory = Path(json.loads(result.stdout)["devices"][0]["directory"])
        values: dict[str, object] = {
            "host": "localhost",
            "port": port or self.broker_port,
            "telemetry_interval_s": 1,
            "heartbeat_interval_s": 5,
            "backoff_initial_s": 0.2,
            "backoff_max_s": 1,
            "ack_timeout_s": 5,
            **(mqtt or {}),
        }
        # The factory writes [mqtt] and [agent] for the home's broker; the tests point the
        # device at their own broker or proxy with faster timings instead.
        conf = directory / "device.toml"
        head = conf.read_text(encoding="utf-8").split("\n[mqtt]")[0].rstrip("\n")
        lines = [head, "", "[mqtt]"] + [f"{k} = {json.dumps(v)}" for k, v in values.items()]
        conf.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return directory

    def shorten_ldevid(self, device: Path, *, due_in_s: float, fraction: float) -> str:
        """Replace the device's LDevID by a recorded one whose renewal is due in ``due_in_s``."""
        args = {
            "home": str(self.server.home),
            "ldevid": str(device / "ldevid.pem"),
            "device_id": device.name,
            "due_in_s": due_in_s,
            "fraction": fraction,
        }
        result = subprocess.run(
            [sys.executable, "-c", _SHORT_LDEVID_SCRIPT, json.dumps(args)],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()


@pytest.fixture(scope="session")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    for tool in ("mosquitto", "mosquitto_pub", "mosquitto_sub", "softhsm2-util"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            pytest.skip(f"{tool} is not installed (needed for real broker/token tests)")
    from trustfleet.broker import Broker, BrokerConfig

    base = tmp_path_factory.mktemp("ag")
    work = base / "work"
    work.mkdir()
    with running_server(base) as server:
        port = free_port()
        config = BrokerConfig.for_home(server.home, port=port, service_identities=[SERVICE_CN])
        broker = Broker(config)
        crl = server.request("GET", "/crl/device.crl")
        assert crl.status_code == 200, crl.text
        broker.start(crl_der=crl.content)
        try:
            yield Fleet(
                server=server,
                broker=broker,
                broker_port=port,
                service=service_identity(server.home, work),
                work=work,
            )
        finally:
            broker.stop()
