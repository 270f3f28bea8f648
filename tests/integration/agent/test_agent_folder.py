"""One device folder, one agent; a device folder works wherever it is moved or copied (§5).

A second agent on a folder would power-cycle the first one's TPM (which then misses its
challenges and is quarantined): it is refused with one line naming the holder's pid, by both
entry points. A moved folder (or a copy whose original is gone) enrolls and runs from its new
place, with its own token.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from agentfleet import Fleet
from agentkit import WAIT_S, AgentProcess

from support.server import run_cli
from support.waiting import eventually
from trustfleet.sim.process import free_port

pytestmark = pytest.mark.integration

LEAN_AGENT = Path(sys.executable).parent / "trustfleet-agent"


def _second_cli(device: Path) -> tuple[int, str]:
    result = run_cli("agent", "run", "--device", device, "--once")
    return result.returncode, result.stdout + result.stderr


def _second_lean(device: Path) -> tuple[int, str]:
    result = subprocess.run(
        [str(LEAN_AGENT), "run", "--device", str(device), "--once"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    return result.returncode, result.stdout + result.stderr


@pytest.mark.parametrize(
    "second", [_second_cli, _second_lean], ids=["second_agent_cli", "second_agent_lean_entry"]
)
def test_second_agent_on_one_device_folder_is_refused(
    fleet: Fleet, second: Callable[[Path], tuple[int, str]]
) -> None:
    device = fleet.device()
    first = AgentProcess(device)
    try:
        assert eventually((device / "ldevid.pem").exists, timeout_s=WAIT_S), first.text()
        code, text = second(device)
        assert code == 5, text
        lines = [line for line in text.splitlines() if line.strip()]
        assert len(lines) == 1 and "Traceback" not in text, text
        assert f"pid {first.proc.pid}" in lines[0], lines[0]
        assert first.proc.poll() is None, first.text()  # the first one is untouched
        assert (device / "agent.lock").stat().st_mode & 0o777 == 0o600
    finally:
        assert first.terminate() == 0, first.text()


def _moved(device: Path, dest: Path) -> Path:
    return Path(shutil.move(str(device), str(dest)))


def _copied_then_original_deleted(device: Path, dest: Path) -> Path:
    shutil.copytree(device, dest, symlinks=True)
    shutil.rmtree(device)
    return dest


@pytest.mark.parametrize(
    ("relocate", "enroll_first"),
    [(_moved, False), (_moved, True), (_copied_then_original_deleted, False)],
    ids=["moved_before_enrollment", "moved_after_enrollment", "copied_then_original_deleted"],
)
def test_relocated_device_folder_enrolls_and_runs(
    fleet: Fleet, relocate: Callable[[Path, Path], Path], enroll_first: bool
) -> None:
    device = fleet.device()
    if enroll_first:
        result = run_cli("agent", "run", "--device", device, "--once")
        assert result.returncode == 0, result.stdout + result.stderr
    dest = fleet.work / f"elsewhere-{free_port()}" / device.name
    dest.parent.mkdir()
    moved = relocate(device, dest)
    result = run_cli("agent", "run", "--device", moved, "--once")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (moved / "ldevid.pem").exists()
    conf = (moved / "softhsm2.conf").read_text()
    assert f"directories.tokendir = {moved.resolve() / 'tokens'}" in conf, conf
    assert str(device) not in conf
