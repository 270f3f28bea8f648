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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.identities import SERVICE_CN, Identity, service_identity
from support.ldevid import shorten_ldevid
from support.server import RunningServer, run_cli, running_server
from support.tools import require_tools
from trustfleet.sim.process import free_port


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
        return shorten_ldevid(
            self.server.home, device, due_in_s=due_in_s, fraction=fraction, validity_s=1
        )


@pytest.fixture(scope="session")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    require_tools(
        "mosquitto", "mosquitto_pub", "mosquitto_sub", "softhsm2-util",
        hint="needed for real broker/token tests",
    )  # fmt: skip
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
