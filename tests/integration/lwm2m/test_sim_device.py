"""The simulated LwM2M device against a real 'trustfleet server run' with [lwm2m] enabled.

One server per module (the ``srv`` fixture of conftest.py); the device process runs once
against it and the test checks what it reports and what the server recorded.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from support.server import run_cli
from trustfleet.sim.process import stop_group

DEVICE_TIMEOUT_S = 120


def _provision(srv: Any, out: Path, *, security: str) -> Path:
    result = srv.server.cli(
        "factory",
        "provision",
        "--out",
        out,
        "--count",
        "1",
        "--protocol",
        "lwm2m",
        "--security",
        security,
    )
    assert result.returncode == 0, result.stderr
    (folder,) = [path for path in out.iterdir() if (path / "device.toml").exists()]
    return folder


def _run_device(folder: Path, *args: str) -> tuple[int, str, str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "trustfleet.sim.lwm2m_device", "--device", str(folder), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, err = process.communicate(timeout=DEVICE_TIMEOUT_S)
    finally:
        stop_group(process)
    return process.returncode, out.decode(), err.decode()


@pytest.mark.parametrize("security", ["psk", "cert"], ids=["psk-bootstrap", "certificate"])
def test_device_registers_reports_and_deregisters(srv: Any, tmp_path: Path, security: str) -> None:
    folder = _provision(srv, tmp_path / "devices", security=security)
    if security == "cert":  # the DTLS certificate is the LDevID, issued at enrollment (EST)
        enrolled = run_cli("agent", "enroll", "--device", folder)
        assert enrolled.returncode == 0, enrolled.stderr
    code, out, err = _run_device(folder, "--once", "--json")
    assert code == 0, err
    run = json.loads(out)
    assert run["registered"] and run["location"].startswith("/rd/")
    assert run["bootstrapped"] == (security == "psk")
    assert "Traceback" not in err
