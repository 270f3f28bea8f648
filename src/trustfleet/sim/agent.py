"""One virtual device of the harness: its folder and its agent process.

:class:`SimAgent` runs the simulation's agent entry point (``python -m
trustfleet.agent.simulated run``: the device's boot loop plus the fault-injection test seam) as
a :class:`~trustfleet.sim.process.ManagedProcess`, or one-shot commands (``agent enroll``,
``agent run --once``) as child processes, and reads what the device holds on disk (its LDevID,
its boot environment). Simulated faults go in the device folder's fault file, which only the
simulated entry point reads.

With ``agent_command`` the agent runs from another installation instead: e.g. the device
distribution's ``trustfleet-agent`` console script in a venv of its own (issue 17), run as
``<agent_command> run --device DIR`` (the device's entry point: no faults) in the device folder
with no ``PYTHONPATH``, so it imports that installation and nothing of the checkout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cryptography import x509

from trustfleet.agent.platform.faults import FAULT_FILE, MetricsScenario
from trustfleet.configfile.device import DeviceSettings, update_device_settings
from trustfleet.fileio import write_atomic
from trustfleet.sim.overrides import Changes
from trustfleet.sim.process import ManagedProcess
from trustfleet.sim.server import console_script

__all__ = ["AGENT_COMMAND_TIMEOUT_S", "FAULT_FILE", "SIMULATED_ENTRY", "SimAgent"]

AGENT_COMMAND_TIMEOUT_S = 90.0
SIMULATED_ENTRY = "trustfleet.agent.simulated"
"""The agent entry point of simulated devices (``trustfleet-agent`` plus the fault seam)."""


class SimAgent:
    """A device folder made by the factory, and the agent that runs it.

    Args:
        directory: The device folder (``device.toml``, tokens, slots).
        agent_command: The agent of another installation (e.g. ``[venv/bin/trustfleet-agent]``),
            run as ``<agent_command> run --device DIR``; default: this interpreter's simulated
            entry point (:data:`SIMULATED_ENTRY`, which reads the fault file).
    """

    def __init__(
        self, directory: Path, *, agent_command: Sequence[str | os.PathLike[str]] | None = None
    ) -> None:
        self.directory = directory
        self.device_id = directory.name
        self.agent_command = tuple(agent_command) if agent_command is not None else None
        self.process: ManagedProcess | None = None

    def __repr__(self) -> str:
        return f"<SimAgent {self.device_id} {self.process!r}>"

    @property
    def log(self) -> Path:
        """The agent's log file (in its folder)."""
        return self.directory / "agent.log"

    @property
    def running(self) -> bool:
        """Whether its agent process runs."""
        return self.process is not None and self.process.running

    def start(self, *, summary: bool = False) -> SimAgent:
        """Boot the device: the simulated agent's boot loop in its own session (returns at once).

        Readiness is the product's state (enrolled, telemetry stored), which the fleet waits on.
        With ``summary`` the agent prints its run summary as JSON into its log when it stops
        (what it published and had acknowledged: :meth:`last_summary`).
        """
        self.stop()
        argv: list[str | os.PathLike[str]] = [*self._entry(), "run"]
        argv += ["--json"] if summary else []
        argv += ["--device", self.directory]
        env, cwd = self._environment()
        self.process = ManagedProcess(
            argv, log=self.log, env=env, cwd=cwd, name=f"agent {self.device_id}"
        )
        self.process.start()
        return self

    def _entry(self) -> list[str | os.PathLike[str]]:
        if self.agent_command is not None:
            return list(self.agent_command)
        return [sys.executable, "-m", SIMULATED_ENTRY]

    def _environment(self) -> tuple[dict[str, str] | None, Path | None]:
        """Another installation's agent: no ``PYTHONPATH``, started in the device folder."""
        if self.agent_command is None:
            return None, None
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        return env, self.directory

    def stop(self) -> None:
        """Stop the agent's process group (SIGTERM, then SIGKILL after a bound)."""
        if self.process is not None:
            self.process.stop()
            self.process = None

    def last_summary(self) -> dict[str, Any] | None:
        """The last run summary in the log (an agent started with ``summary``), or None."""
        text = self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""
        start = text.rfind("\n{\n")
        if start < 0:
            return None
        try:
            document, _end = json.JSONDecoder().raw_decode(text, start + 1)
        except ValueError:
            return None
        return document if isinstance(document, dict) else None

    def restart(self) -> SimAgent:
        """Reboot the device (stop, then start)."""
        self.stop()
        return self.start()

    def _command(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(console_script("trustfleet")), "agent", *args, "--device", str(self.directory)],
            capture_output=True,
            text=True,
            timeout=AGENT_COMMAND_TIMEOUT_S,
            check=False,
        )

    def enroll(self, *, reenroll: bool = False) -> subprocess.CompletedProcess[str]:
        """``trustfleet agent enroll`` (``--reenroll`` with the current LDevID)."""
        return self._command("enroll", "--json", *(["--reenroll"] if reenroll else []))

    def run_once(self) -> subprocess.CompletedProcess[str]:
        """``trustfleet agent run --once``: connect, publish, disconnect."""
        return self._command("run", "--once")

    def ldevid(self) -> x509.Certificate:
        """The device's operational certificate as it is on disk now."""
        return x509.load_pem_x509_certificate((self.directory / "ldevid.pem").read_bytes())

    def boot_env(self) -> dict[str, Any]:
        """The device's boot environment (``bootenv.json``: boot slot, trial flags)."""
        doc: dict[str, Any] = json.loads((self.directory / "bootenv.json").read_text("utf-8"))
        return doc

    def configure(self, changes: Changes) -> DeviceSettings:
        """Apply typed changes to ``device.toml`` (validated; unknown keys refused)."""
        return update_device_settings(self.directory, changes)

    def set_faults(self, faults: Mapping[str, str]) -> None:
        """Switch simulated faults on (replacing any); an empty mapping switches them off.

        ``{"health_check": "fail"}`` fails every health check of a new slot; ``{"boot":
        "skip_verify"}`` glitches boot verification away (see ``agent.platform.faults``).
        """
        path = self.directory / FAULT_FILE
        if faults:
            write_atomic(path, json.dumps(dict(faults)).encode("utf-8"))
        else:
            path.unlink(missing_ok=True)

    def follow_scenario(
        self, source: str, *, device_index: int, devices: int, seed: int = 0,
        profile: str = "", interval_s: int = 1,
    ) -> None:  # fmt: skip
        """Make the device's metrics follow a scenario (a file or a built-in name), reported
        every ``interval_s``; other faults are kept. Takes effect at the next start.
        """
        path = self.directory / FAULT_FILE
        doc: dict[str, Any] = json.loads(path.read_text("utf-8")) if path.is_file() else {}
        doc["metrics_scenario"] = MetricsScenario(
            source=source, device_index=device_index, devices=devices, seed=seed, profile=profile
        ).to_json()
        write_atomic(path, json.dumps(doc).encode("utf-8"))
        self.configure({"monitoring": {"enabled": True, "interval_s": interval_s}})

    def tamper_active_image(self, *, offset: int, length: int) -> None:
        """An attacker's change: overwrite ``length`` bytes of the booted slot's image."""
        slot = self.boot_env()["boot_slot"]
        with (self.directory / "slots" / str(slot) / "image.bin").open("r+b") as image:
            image.seek(offset)
            image.write(b"\x90" * length)
