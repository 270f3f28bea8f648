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
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from support.server import RunningServer, running_server
from trustfleet.agent.platform.tpm import DeviceTpm

# The simulation's agent entry point: trustfleet-agent plus faults.json (a glitched boot).
AGENT = (sys.executable, "-m", "trustfleet.agent.simulated")
TRUSTFLEET = Path(sys.executable).parent / "trustfleet"
READY_TIMEOUT_S = 90
RUN_TIMEOUT_S = 120
MODEL = "sim-v1"
IMAGE_BYTES = 256 * 1024


def wait_for(check: Callable[[], Any], *, what: str, timeout_s: float = 60.0) -> Any:
    """Poll ``check`` until it returns something truthy (bounded)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


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

    def start(self) -> None:
        log = self.device / "agent.log"
        with log.open("ab") as out:
            self.proc = subprocess.Popen([*AGENT, "run", "--device", str(self.device)],
                                         stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)  # fmt: skip

    def stop(self) -> int | None:
        """SIGTERM to its process group (a clean shutdown powers the TPM off)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            return proc.wait(60)
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
