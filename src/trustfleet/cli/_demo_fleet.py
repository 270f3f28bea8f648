"""The demo's fleet (``trustfleet demo``): its processes (server, agents), its one store
handle, and the probes its stages use (ports, health, OCSP, CRL). The stages are in ``demo.py``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.x509 import ocsp

from trustfleet.cli._common import now
from trustfleet.errors import Unavailable

__all__ = [
    "_AGENT_TIMEOUT_S",
    "_ATTEST_WAIT_S",
    "_CUT_OFF_TIMEOUT_S",
    "_IMAGE_BYTES",
    "_MODEL",
    "_START_TIMEOUT_S",
    "_UPDATE_TIMEOUT_S",
    "_V1",
    "_V2",
    "_V3",
    "Stage",
    "_Fleet",
    "_agent",
    "_agent_once",
    "_attest_run",
    "_cli",
    "_crl_lists",
    "_device_states",
    "_firmware",
    "_free_port",
    "_ldevid",
    "_ocsp_status",
    "_publish",
    "_quarantine_of",
    "_run_campaign",
    "_runtime",
    "_start_agent",
    "_stop",
    "_stop_agent",
    "_telemetry_counts",
    "_tls_context",
    "_wait_cut_off",
    "_wait_healthy",
    "_wait_port",
]

_START_TIMEOUT_S = 30.0
_AGENT_TIMEOUT_S = 60.0
_CUT_OFF_TIMEOUT_S = 10.0
_UPDATE_TIMEOUT_S = 180.0
_IMAGE_BYTES = 8 * 1024 * 1024
_MODEL = "sim-v1"
_V1, _V2, _V3 = "1.0.0", "1.1.0", "1.2.0"
_ATTEST_WAIT_S = 60


@dataclass
class Stage:
    """One stage of the demo and what it showed."""

    name: str
    ok: bool = False
    seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Fleet:
    workdir: Path
    home: Path
    devices_dir: Path
    port: int
    mqtt_port: int
    device_ids: list[str] = field(default_factory=list)
    server: subprocess.Popen[bytes] | None = None
    agents: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    runtime: Any = None  # the demo's one handle on the store and keys (see _runtime)


def _runtime(fleet: _Fleet) -> Any:
    """One runtime for the whole demo, opened on first use and closed by :func:`_stop`."""
    if fleet.runtime is None:
        from trustfleet.services.runtime import Runtime
        from trustfleet.settings import load_server_settings

        fleet.runtime = Runtime.open(load_server_settings(fleet.home))
    return fleet.runtime


def _wait_cut_off(fleet: _Fleet, victim: str, *, since: float) -> float | None:
    """Seconds from the revocation until the victim's agent lost its MQTT connection."""
    log = fleet.devices_dir / victim / "agent.log"
    start_size = log.stat().st_size if log.exists() else 0
    deadline = since + _CUT_OFF_TIMEOUT_S
    while time.monotonic() < deadline:
        with log.open("rb") as fh:
            fh.seek(start_size)
            tail = fh.read().decode(errors="replace").lower()
        if "disconnect" in tail or "connection lost" in tail or "stopped" in tail:
            return time.monotonic() - since
        time.sleep(0.1)
    return None


def _start_agent(fleet: _Fleet, device_id: str) -> None:
    folder = fleet.devices_dir / device_id
    log = (folder / "agent.log").open("ab")
    fleet.agents[device_id] = subprocess.Popen(
        [sys.executable, "-m", "trustfleet.agent.simulated", "run", "--device", str(folder)],
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    log.close()


def _stop_agent(fleet: _Fleet, device_id: str) -> None:
    proc = fleet.agents.pop(device_id, None)
    if proc is None or proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


def _agent(fleet: _Fleet, device_id: str, *extra: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [
            _cli(),
            "agent",
            "enroll",
            "--device",
            str(fleet.devices_dir / device_id),
            "--json",
            *extra,
        ],
        capture_output=True,
        timeout=60,
        check=False,
    )


def _agent_once(fleet: _Fleet, device_id: str) -> subprocess.CompletedProcess[bytes]:
    folder = str(fleet.devices_dir / device_id)
    return subprocess.run(
        [_cli(), "agent", "run", "--device", folder, "--once"],
        capture_output=True,
        timeout=90,
        check=False,
    )


def _device_states(fleet: _Fleet) -> dict[str, str]:
    with _runtime(fleet).uow.begin(read_only=True) as tx:
        return {d: tx.devices.require(d).state for d in fleet.device_ids}


def _telemetry_counts(fleet: _Fleet) -> dict[str, int]:
    with _runtime(fleet).uow.begin(read_only=True) as tx:
        return {d: tx.telemetry.count(device_id=d) for d in fleet.device_ids}


def _ldevid(fleet: _Fleet, device_id: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(
        (fleet.devices_dir / device_id / "ldevid.pem").read_bytes()
    )


def _tls_context(fleet: _Fleet) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(fleet.home / "public" / "ca-bundle.pem"))


def _ocsp_status(fleet: _Fleet, cert: x509.Certificate) -> str:
    from trustfleet.pki import ocsp_request_for

    issuer = x509.load_pem_x509_certificate((fleet.home / "public" / "device-ca.pem").read_bytes())
    request = urllib.request.Request(  # https to our own loopback service
        f"https://localhost:{fleet.port}/ocsp",
        data=ocsp_request_for(cert, issuer),
        headers={"content-type": "application/ocsp-request"},
    )
    with urllib.request.urlopen(request, context=_tls_context(fleet), timeout=10) as resp:  # noqa: S310
        answer = ocsp.load_der_ocsp_response(resp.read(64 * 1024))
    return answer.certificate_status.name


def _crl_lists(fleet: _Fleet, serial: int) -> bool:
    url = f"https://localhost:{fleet.port}/crl/device.crl"
    with urllib.request.urlopen(url, context=_tls_context(fleet), timeout=10) as resp:
        crl = x509.load_der_x509_crl(resp.read(1024 * 1024))
    return crl.get_revoked_certificate_by_serial_number(serial) is not None


def _wait_healthy(fleet: _Fleet) -> None:
    deadline = time.monotonic() + _START_TIMEOUT_S
    context = _tls_context(fleet)
    while time.monotonic() < deadline:
        if fleet.server is not None and fleet.server.poll() is not None:
            err = fleet.server.stderr.read().decode(errors="replace") if fleet.server.stderr else ""
            raise Unavailable(f"the service exited: {err.strip()[-300:]}")
        try:
            url = f"https://localhost:{fleet.port}/healthz"
            with urllib.request.urlopen(url, context=context, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise Unavailable("the service did not become healthy in time")


def _stop(fleet: _Fleet) -> None:
    for device_id in list(fleet.agents):
        _stop_agent(fleet, device_id)
    if fleet.runtime is not None:
        fleet.runtime.close()
        fleet.runtime = None
    if fleet.server is None or fleet.server.poll() is not None:
        return
    os.killpg(fleet.server.pid, signal.SIGTERM)
    try:
        fleet.server.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(fleet.server.pid, signal.SIGKILL)
        fleet.server.wait(timeout=5)


def _wait_port(port: int) -> None:
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.2)
    raise Unavailable(f"the MQTT broker did not open port {port} in time")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cli() -> str:
    return str(Path(sys.executable).parent / "trustfleet")


def _publish(fleet: _Fleet, version: str) -> dict[str, Any]:
    """Make a simulator image, build and publish it as a release; what was published."""
    from trustfleet.services.ota import build_release, publish_release
    from trustfleet.sim.image import build_image

    image = fleet.workdir / f"image-{version}.bin"
    info = build_image(image, version=version, size_bytes=_IMAGE_BYTES, seed=_MODEL)
    rt = _runtime(fleet)
    build_release(rt, image=image, version=version, model=_MODEL, min_version=None, now=now())
    record = publish_release(rt, model=_MODEL, version=version, now=now())
    image.unlink()
    return {
        "version": record.version,
        "image_bytes": info.length,
        "targets_version": record.targets_version,
    }


def _run_campaign(
    fleet: _Fleet,
    devices: list[str],
    *,
    waves: list[float],
    max_failure_rate: float,
    version: str = _V2,
) -> Any:
    """Create a campaign for ``devices`` and wait (bounded) until it ends; its last status."""
    from trustfleet.services.campaigns import campaign_status, create_campaign

    rt = _runtime(fleet)
    campaign = create_campaign(
        rt,
        version=version,
        model=_MODEL,
        devices=devices,
        waves=waves,
        max_failure_rate=max_failure_rate,
        now=now(),
        device_timeout_s=int(_UPDATE_TIMEOUT_S),
        actor="operator:demo",
    )
    deadline = time.monotonic() + _UPDATE_TIMEOUT_S
    status = campaign_status(rt, campaign.id)
    while status.campaign.state == "running" and time.monotonic() < deadline:
        time.sleep(0.5)
        status = campaign_status(rt, campaign.id)
    return status


def _firmware(fleet: _Fleet, device_ids: list[str]) -> dict[str, str | None]:
    with _runtime(fleet).uow.begin(read_only=True) as tx:
        return {d: tx.devices.require(d).firmware_version for d in device_ids}


def _attest_run(fleet: _Fleet, device_ids: list[str]) -> dict[str, dict[str, Any]]:
    """``trustfleet attest run`` for each device, concurrently; each verdict (or its error).

    A child process each: this process signs releases through python-pkcs11, and a challenge
    is published with the service key through awscrt, which must not share the token login.
    """
    procs = {
        d: subprocess.Popen(
            [
                _cli(),
                "attest",
                "run",
                "--home",
                str(fleet.home),
                d,
                "--json",
                "--wait",
                str(_ATTEST_WAIT_S),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        for d in device_ids
    }
    verdicts: dict[str, dict[str, Any]] = {}
    for device_id, proc in procs.items():
        out, err = proc.communicate(timeout=_ATTEST_WAIT_S + 60)
        try:
            verdicts[device_id] = json.loads(out)
        except json.JSONDecodeError:
            verdicts[device_id] = {"ok": False, "error": err.decode(errors="replace")[-300:]}
    return verdicts


def _quarantine_of(fleet: _Fleet, device_id: str) -> Any:
    with _runtime(fleet).uow.begin(read_only=True) as tx:
        return tx.attestation.quarantine(device_id)
