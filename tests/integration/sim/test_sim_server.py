"""The harness's server: a home made through the services, typed overrides, ready on /readyz.

Real SoftHSM2 tokens, the HTTPS service, Mosquitto and ingest on loopback: the same
:class:`SimServer` the demo and the tests' ``running_server`` use.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from trustfleet.errors import Config
from trustfleet.sim.fleet import utc_now
from trustfleet.sim.process import group_alive
from trustfleet.sim.server import SimServer, https_status

pytestmark = pytest.mark.integration


def test_a_server_with_overrides_serves_until_its_group_is_stopped(tmp_path: Path) -> None:
    server = SimServer.create(
        tmp_path / "home",
        now=utc_now(),
        overrides={"attestation": {"enabled": False}, "broker": {"revocation_poll_s": 0.25}},
        log=tmp_path / "server.log",
    )
    settings = server.settings
    assert settings.attestation.enabled is False
    assert settings.broker.revocation_poll_s == 0.25
    assert not server.ready()  # nothing serves yet
    try:
        server.start()
        assert server.ready()
        assert https_status(f"{server.base_url}/healthz", cafile=server.ca_bundle) == 200
        with server.runtime.uow.begin(read_only=True) as tx:  # the store, read in this process
            assert tx.devices.list(limit=10) == []
        listed = server.cli("device", "list", "--json")
        assert listed.returncode == 0, listed.stderr
        pid = server.pid
    finally:
        server.stop()
    assert not group_alive(pid)  # the server and every child of its session
    assert https_status(f"{server.base_url}/readyz", cafile=server.ca_bundle) is None


def test_an_unknown_override_is_refused_before_anything_starts(tmp_path: Path) -> None:
    with pytest.raises(Config, match="enable"):
        SimServer.create(
            tmp_path / "home", now=utc_now(), overrides={"attestation": {"enable": False}}
        )
