"""A real fleet for the end-to-end tamper table: server, broker, a provisioned device, its agent.

``server run`` (HTTPS, Mosquitto, ingest workers, the attestation scheduler) serves a home with
``[attestation] max_missed = 1``; release 1.0.0 of ``sim-v1``
is published; the factory provisions one device (its SoftHSM2 token, its swtpm manufactured by
the home's simulated TPM vendor, release 1.0.0 in slot a); ``trustfleet-agent run --once``
enrolls it over EST; then the real agent runs (measured boot, AK enrollment, attester).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from support.agents import SIM_AGENT, boot_loop
from support.server import RunningServer, running_server
from trustfleet.agent.platform.measured_boot import DeviceTpm
from trustfleet.sim.process import ManagedProcess

AGENT = SIM_AGENT
TRUSTFLEET = Path(sys.executable).parent / "trustfleet"
READY_TIMEOUT_S = 90
RUN_TIMEOUT_S = 120
MODEL = "sim-v1"
IMAGE_BYTES = 256 * 1024


def enrolled_tpm_device(server: RunningServer, base: Path) -> Path:
    """Release 1.0.0 of :data:`MODEL` published; one device provisioned (with its TPM) in
    ``base / "devs"`` and enrolled by ``trustfleet-agent run --once``; its folder."""
    from trustfleet.sim.image import build_image

    image = base / "v1.bin"
    build_image(image, version="1.0.0", size_bytes=IMAGE_BYTES, seed=MODEL)
    for args in (("release", "build", "--version", "1.0.0", "--image", str(image),
                  "--model", MODEL), ("release", "publish", "--version", "1.0.0",
                                      "--model", MODEL)):  # fmt: skip
        result = server.cli(*args)
        assert result.returncode == 0, result.stderr
    made = server.cli_json("factory", "provision", "--out", base / "devs", "--model", MODEL)
    device = Path(made["devices"][0]["directory"])
    assert DeviceTpm(device).present(), "the factory gave the device no TPM"
    first = agent_cli("run", "--device", device, "--once", "--json")
    assert first.returncode == 0, first.stderr
    return device


@contextmanager
def attest_server(base: Path) -> Iterator[RunningServer]:
    """``server run`` on a home tuned for the tamper table (see the module docstring)."""
    tuned = {"attestation.max_missed": "1", "attestation.poll_s": "0.2"}
    with running_server(base, settings=tuned) as server:
        yield server


def agent_cli(*args: str | os.PathLike[str]) -> subprocess.CompletedProcess[str]:
    """``trustfleet-agent ARGS`` (bounded; never raises on a non-zero exit)."""
    return subprocess.run([*AGENT, *map(str, args)], capture_output=True, text=True,
                          timeout=RUN_TIMEOUT_S, check=False)  # fmt: skip


@dataclass
class Agent:
    """``trustfleet-agent run --device DIR`` (the boot loop) in its own session."""

    device: Path
    proc: subprocess.Popen[bytes] | None = None
    _process: ManagedProcess | None = None

    def start(self) -> None:
        self._process = boot_loop(self.device, log=self.device / "agent.log")
        self.proc = self._process.proc

    def stop(self) -> int | None:
        """SIGTERM to its process group (a clean shutdown powers the TPM off)."""
        process, self._process, self.proc = self._process, None, None
        if process is None:
            return None
        try:
            return process.stop(timeout_s=60)
        finally:
            DeviceTpm(self.device).power().power_off()  # in case it did not exit cleanly

    def log(self) -> str:
        path = self.device / "agent.log"
        return path.read_text(errors="replace") if path.exists() else ""


def attest_run(server: RunningServer, device_id: str, *, wait_s: float = 45) -> dict[str, Any]:
    """``trustfleet attest run ID --json``: the verdict document (exit 0 pass, 1 fail)."""
    result = server.cli("attest", "run", device_id, "--wait", str(wait_s), "--json")
    assert result.returncode in (0, 1), result.stderr
    doc: dict[str, Any] = json.loads(result.stdout)
    assert doc["ok"] is (result.returncode == 0)
    return doc


def codes(doc: dict[str, Any]) -> set[str]:
    """The error codes of a verdict document."""
    return {f["code"] for f in doc["findings"] if f["severity"] == "error"}


def status(server: RunningServer, device_id: str) -> dict[str, Any]:
    """``trustfleet attest status ID --json``."""
    return server.cli_json("attest", "status", device_id)  # type: ignore[no-any-return]
