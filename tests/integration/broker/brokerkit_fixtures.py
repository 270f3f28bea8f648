"""Fixtures for the broker tests: a real server home, real device certificates, Mosquitto.

* ``fleet`` (session): a running ``trustfleet server`` with two enrolled software devices A and
  B, a fleet-service certificate ``svc.ingest`` from the device CA, a foreign client
  certificate and an IDevID (manufacturing CA) with its chain.
* ``broker`` (session): a started :class:`trustfleet.broker.Broker` for that home.
* ``mqtt``: runs ``mosquitto_sub`` / ``mosquitto_pub`` as independent clients.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from support.identities import SERVICE_CN, Identity, mqtt_client_id, service_identity
from support.server import (
    RunningServer,
    enroll_software,
    free_port,
    make_software_device,
    openssl,
    running_server,
)
from support.tools import require_tools

CLIENT_TIMEOUT_S = 20


@dataclass
class Fleet:
    server: RunningServer
    a: Identity
    b: Identity
    service: Identity
    foreign: Identity
    idevid_chain: Identity

    work: Path

    def new_device(self, prefix: str) -> Identity:
        """A newly registered and enrolled software device."""
        device = make_software_device(self.server, self.work, prefix=prefix)
        ldevid, key = enroll_software(self.server, device, self.work)
        return Identity(device.device_id, ldevid, key)

    def device_crl(self) -> bytes:
        response = self.server.request("GET", "/crl/device.crl")
        assert response.status_code == 200, response.text
        return response.content


def _foreign_identity(work: Path) -> Identity:
    key, cert = work / "foreign.key", work / "foreign.pem"
    openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", key, "-out", cert, "-subj", "/CN=foreign-device-01", "-days", "1",
    )  # fmt: skip
    return Identity("foreign-device-01", cert, key)


@pytest.fixture(scope="session")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    require_tools(
        "mosquitto",
        "mosquitto_pub",
        "mosquitto_sub",
        hint="apt-get install mosquitto mosquitto-clients",
    )
    base = tmp_path_factory.mktemp("bk")
    work = base / "work"
    work.mkdir()
    # Service windows of one second: the server's broker publishes its statistics every second
    # and its ingest stores them (test_broker_stats.py), without slowing the other tests.
    with running_server(base, settings={"monitoring.service_window_s": "1"}) as server:
        identities = []
        for prefix in ("a", "b"):
            device = make_software_device(server, work, prefix=prefix)
            ldevid, key = enroll_software(server, device, work)
            identities.append(Identity(device.device_id, ldevid, key))
        idev = make_software_device(server, work, prefix="idev")
        chain = work / "idevid-chain.pem"
        chain.write_bytes(
            idev.idevid.read_bytes() + (server.home / "public/manufacturing-ca.pem").read_bytes()
        )
        yield Fleet(
            server=server,
            a=identities[0],
            b=identities[1],
            service=service_identity(server.home, work),
            foreign=_foreign_identity(work),
            idevid_chain=Identity(idev.device_id, chain, idev.key),
            work=work,
        )


def _broker_home(fleet: Fleet, home: Path) -> Path:
    """A copy in ``home`` of what a broker reads from the server's home: the running server
    supervises a broker of its own in HOME/broker, and a broker under test never shares files
    or sockets with it."""
    for part in ("public", "tls", "secrets"):
        shutil.copytree(fleet.server.home / part, home / part)
    return home


@contextmanager
def _started(fleet: Fleet, config: Any) -> Iterator[Any]:
    """A broker of ``config`` serving the fleet's current device CRL; stopped afterwards."""
    from trustfleet.broker import Broker

    broker = Broker(config)
    broker.start(crl_der=fleet.device_crl())
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def broker(fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from trustfleet.broker import BrokerConfig

    home = _broker_home(fleet, tmp_path_factory.mktemp("broker-home"))
    config = BrokerConfig.for_home(home, port=free_port(), service_identities=[SERVICE_CN])
    with _started(fleet, config) as broker:
        yield broker


class Mqtt:
    """mosquitto_sub / mosquitto_pub against the broker under test."""

    def __init__(self, fleet: Fleet, port: int) -> None:
        self.ca = fleet.server.ca_bundle
        self.port = port

    def _args(
        self, who: Identity, tls_version: str = "tlsv1.3", client_id: str | None = None
    ) -> list[str]:
        args = ["-h", "localhost", "-p", str(self.port), "--cafile", str(self.ca)]
        args += ["--tls-version", tls_version, "-i", client_id or mqtt_client_id(who.name)]
        if who.cert.name != "none":
            args += ["--cert", str(who.cert), "--key", str(who.key)]
        return args

    def pub(
        self,
        who: Identity,
        topic: str,
        payload: str,
        *,
        extra: tuple[str, ...] = (),
        stdin: str | None = None,
        **kw: str,
    ) -> subprocess.CompletedProcess[str]:
        """One ``mosquitto_pub -q 1``; ``stdin`` with ``extra=("-l",)`` sends one per line."""
        body = ["-m", payload] if stdin is None else []
        return subprocess.run(
            ["mosquitto_pub", *self._args(who, **kw), "-q", "1", "-t", topic, *body, *extra],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=CLIENT_TIMEOUT_S * 3,
            check=False,
        )

    def pub_stream(self, who: Identity, topic: str) -> subprocess.Popen[str]:
        """``mosquitto_pub -l``: one connection; each line written to its stdin is a message."""
        args = ["mosquitto_pub", *self._args(who), "-q", "1", "-t", topic, "-l"]
        return subprocess.Popen(
            args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, start_new_session=True,
        )  # fmt: skip

    def sub(
        self,
        who: Identity,
        topics: list[str],
        *,
        count: int,
        wait_s: int,
        v5: bool = False,
        tls_version: str = "tlsv1.3",
        client_id: str | None = None,
    ) -> Subscriber:
        # stdbuf: mosquitto_sub's stdout is a pipe, so its stdio would hold the SUBACK line.
        args = ["stdbuf", "-oL", "mosquitto_sub", *self._args(who, tls_version, client_id)]
        args += ["-d", "-v"]
        args += ["-q", "1"]
        args += ["-C", str(count), "-W", str(wait_s)] + (["-V", "mqttv5"] if v5 else [])
        for topic in topics:
            args += ["-t", topic]
        proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,
        )  # fmt: skip
        return Subscriber(proc, client_id=args[args.index("-i") + 1])


class Subscriber:
    """A running mosquitto_sub; ``wait_subscribed`` reads its debug output up to the SUBACK."""

    def __init__(self, proc: subprocess.Popen[str], *, client_id: str) -> None:
        self.proc = proc
        self.client_id = client_id
        self.lines: list[str] = []

    def wait_subscribed(self) -> bool:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if line.startswith("Subscribed (mid"):
                return True
        return False

    @property
    def granted(self) -> list[int]:
        """The SUBACK's codes (after ``wait_subscribed``): QoS granted, or >= 128 refused."""
        for line in self.lines:
            if line.startswith("Subscribed (mid"):
                return [int(code) for code in line.split("):", 1)[1].split(",")]
        return []

    def finish(self, timeout_s: float = CLIENT_TIMEOUT_S) -> str:
        out, _ = self.proc.communicate(timeout=timeout_s)
        self.lines.append(out)
        return "".join(self.lines)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate(timeout=CLIENT_TIMEOUT_S)


@pytest.fixture
def mqtt(fleet: Fleet, broker: object) -> Mqtt:
    return Mqtt(fleet, broker.config.port)  # type: ignore[attr-defined]


GUARD_RATE_PER_S = 1.0
GUARD_BURST = 50
GUARD_MAX_PAYLOAD = 4096


@pytest.fixture(scope="module")
def guarded(fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A broker of its own with small device limits (rate, burst, payload) for attack tests."""
    from trustfleet.broker import BrokerConfig

    home = _broker_home(fleet, tmp_path_factory.mktemp("guard-home"))
    base = BrokerConfig.for_home(home, port=free_port(), service_identities=[SERVICE_CN])
    config = BrokerConfig(
        **{
            **base.__dict__,
            "device_rate_per_s": GUARD_RATE_PER_S,
            "device_burst": GUARD_BURST,
            "device_max_payload_bytes": GUARD_MAX_PAYLOAD,
        }
    )
    with _started(fleet, config) as broker:
        yield broker


@pytest.fixture
def gmqtt(fleet: Fleet, guarded: object) -> Mqtt:
    return Mqtt(fleet, guarded.config.port)  # type: ignore[attr-defined]


STATS_INTERVAL_S = 1


@pytest.fixture(scope="module")
def counted(fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A broker of its own whose guard publishes per-device counters every second."""
    from trustfleet.broker import BrokerConfig

    home = _broker_home(fleet, tmp_path_factory.mktemp("stats-home"))
    config = BrokerConfig.for_home(
        home, port=free_port(), service_identities=[SERVICE_CN], stats_interval_s=STATS_INTERVAL_S
    )
    with _started(fleet, config) as broker:
        yield broker


@pytest.fixture
def cmqtt(fleet: Fleet, counted: object) -> Mqtt:
    return Mqtt(fleet, counted.config.port)  # type: ignore[attr-defined]


@pytest.fixture
def one_slot(fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A broker whose guard counts one device at a time (stats every second)."""
    from trustfleet.broker import BrokerConfig

    home = _broker_home(fleet, tmp_path_factory.mktemp("slot-home"))
    base = BrokerConfig.for_home(
        home, port=free_port(), service_identities=[SERVICE_CN], stats_interval_s=STATS_INTERVAL_S
    )
    with _started(fleet, BrokerConfig(**{**base.__dict__, "stats_max_devices": 1})) as broker:
        yield broker
