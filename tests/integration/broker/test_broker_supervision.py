"""The supervisor restarts a killed Mosquitto, stops it for good, and explains failures.

Each test that stops a broker stops one of its own, so the order of the modules does not matter
(the suite may run them in any order, on several workers).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import time
from pathlib import Path

import pytest
from brokerkit_fixtures import SERVICE_CN, Fleet, Mqtt

from support.waiting import eventually
from trustfleet.broker import Broker, BrokerConfig
from trustfleet.errors import Config, Unavailable, VerificationFailed
from trustfleet.sim.process import free_port

RESTART_WAIT_S = 15


def _copy_home(fleet: Fleet, target: Path) -> Path:
    """The parts of the home a broker reads, so a second broker never touches the first."""
    for part in ("public", "tls", "secrets"):
        shutil.copytree(fleet.server.home / part, target / part)
    return target


@pytest.mark.parametrize(
    "case", ["mosquitto_missing", "port_in_use", "foreign_crl"], ids=lambda c: c
)
def test_start_errors_are_readable(fleet: Fleet, tmp_path: Path, case: str) -> None:
    home = _copy_home(fleet, tmp_path / "h")
    config = BrokerConfig.for_home(home, port=free_port(), service_identities=[SERVICE_CN])
    crl = fleet.device_crl()
    if case == "mosquitto_missing":
        config = BrokerConfig(**{**config.__dict__, "mosquitto": tmp_path / "no-mosquitto"})
        with pytest.raises(Config, match="not installed"):
            Broker(config).start(crl_der=crl)
    elif case == "port_in_use":
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", config.port))
            busy.listen()
            broker = Broker(config)
            with pytest.raises(Unavailable, match="in use"):
                broker.start(crl_der=crl)
            assert broker.pid is None
    else:
        root_crl = fleet.server.request("GET", "/crl/root.crl").content
        with pytest.raises(VerificationFailed):
            Broker(config).start(crl_der=root_crl)


def test_service_identity_must_not_look_like_a_device(fleet: Fleet) -> None:
    with pytest.raises(Config, match="service identity"):
        BrokerConfig.for_home(fleet.server.home, port=1883, service_identities=["svc-ingest-01"])


def test_killed_broker_is_restarted(fleet: Fleet, broker: Broker, mqtt: Mqtt) -> None:
    old = broker.pid
    assert old is not None
    t0 = time.monotonic()
    os.kill(old, signal.SIGKILL)
    eventually(lambda: broker.pid not in (None, old), timeout_s=RESTART_WAIT_S, poll_s=0.05)
    assert broker.pid not in (None, old)
    print(f"\nrestart after SIGKILL: {time.monotonic() - t0:.3f}s (restarts={broker.restarts})")
    topic = f"tf/v1/d/{fleet.a.name}/telemetry"
    assert mqtt.pub(fleet.a, topic, "after-restart").returncode == 0


def test_stop_leaves_no_process(fleet: Fleet, tmp_path: Path) -> None:
    home = _copy_home(fleet, tmp_path / "h")
    config = BrokerConfig.for_home(home, port=free_port(), service_identities=[SERVICE_CN])
    broker = Broker(config)
    broker.start(crl_der=fleet.device_crl())
    pid = broker.pid
    assert pid is not None
    broker.stop()
    assert broker.pid is None
    assert not Path(f"/proc/{pid}").exists()
    time.sleep(2 * broker.config.poll_interval_s)
    assert broker.pid is None  # the monitor did not bring it back
