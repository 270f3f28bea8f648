"""Renewal at 2/3 of the LDevID's life against a live ``server run`` (issue 9 §4).

The renewal supersedes the old LDevID; the server's revocation watcher then reloads the
broker's CRL (which lists the old one). The agent must carry on with the new certificate:
its telemetry keeps reaching the store after the reload, and the old certificate stays
refused by EST.
"""

from __future__ import annotations

import json
import secrets
import time
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509

from support.ldevid import shorten_ldevid
from support.server import TRUSTFLEET, RunningServer, run_cli, running_server
from support.waiting import eventually
from trustfleet.sim.process import ManagedProcess

pytestmark = pytest.mark.integration

WAIT_S = 90


def _wait(check: Callable[[], object], timeout_s: float) -> bool:
    return eventually(check, timeout_s=timeout_s, poll_s=0.25)


def _fast_device(server: RunningServer, out: Path) -> Path:
    made = run_cli("factory", "provision", "--home", server.home, "--out", out, "--json")
    assert made.returncode == 0, made.stderr
    device = Path(json.loads(made.stdout)["devices"][0]["directory"])
    conf = device / "device.toml"
    head, _, mqtt_and_rest = conf.read_text(encoding="utf-8").partition("\n[mqtt]")
    values = tomllib.loads("[mqtt]" + mqtt_and_rest)["mqtt"]
    values.update(telemetry_interval_s=0.5, heartbeat_interval_s=5, backoff_initial_s=0.2,
                  backoff_max_s=1)  # fmt: skip
    lines = [head.rstrip("\n"), "", "[mqtt]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    conf.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return device


def _events(server: RunningServer, device_id: str, kind: str) -> list[object]:
    with server.runtime.uow.begin(read_only=True) as tx:
        return [e for e in tx.events.list(subject=f"device:{device_id}", limit=1000)
                if e.type == kind]  # fmt: skip


def _broker_crl_lists(server: RunningServer, serial: str) -> bool:
    """Whether the CRL file the broker checks handshakes against lists ``serial``."""
    crl = x509.load_pem_x509_crl((server.home / "broker" / "device-ca.crl.pem").read_bytes())
    return crl.get_revoked_certificate_by_serial_number(int(serial, 16)) is not None


def _telemetry(server: RunningServer, device_id: str) -> int:
    with server.runtime.uow.begin(read_only=True) as tx:
        count: int = tx.telemetry.count(device_id=device_id)
        return count


def test_agent_renews_and_keeps_publishing_across_the_crl_reload(tmp_path: Path) -> None:
    with running_server(tmp_path, settings={"attestation.enabled": "false"}) as server:
        device = _fast_device(server, tmp_path / "devs")
        enrolled = run_cli("agent", "enroll", "--device", device, "--json")
        assert enrolled.returncode == 0, enrolled.stderr
        short = shorten_ldevid(server.home, device, due_in_s=6, fraction=0.6667)
        old_pem = (device / "ldevid.pem").read_bytes()
        log = device / f"agent-{secrets.token_hex(3)}.log"
        argv = [TRUSTFLEET, "agent", "run", "--device", device]
        with ManagedProcess(argv, log=log, name="agent"):
            assert _wait(lambda: _events(server, device.name, "device.reenrolled"), WAIT_S), (
                log.read_text(errors="replace")
            )
            # The superseded LDevID is on a new CRL, which the broker loads at its next poll.
            assert _wait(lambda: _broker_crl_lists(server, short), 20), server.log.read_text()
            time.sleep(1)
            after_reload = _telemetry(server, device.name)
            assert _wait(lambda: _telemetry(server, device.name) >= after_reload + 3, 30), (
                log.read_text(errors="replace")
            )
        new = x509.load_pem_x509_certificate((device / "ldevid.pem").read_bytes())
        assert format(new.serial_number, "x") != short
        (superseded,) = _events(server, device.name, "certificate.superseded")
        assert short in superseded.details["serials"]  # type: ignore[attr-defined]
        with server.runtime.uow.begin(read_only=True) as tx:
            old = tx.certificates.get("device", short)
        assert old is not None and old.revocation_reason == "superseded"
        assert old_pem != (device / "ldevid.pem").read_bytes()
        assert "Traceback" not in log.read_text(errors="replace")
