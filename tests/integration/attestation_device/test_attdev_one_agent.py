"""Two agents on one device folder (issue 9 §5): the second never touches the first's TPM.

Before, the second agent's boot power-cycled the swtpm the first one was using: the first
then missed its challenges and was quarantined. Now the second is refused with one line
naming the first's pid, the first's swtpm is the very same process, and attestation passes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from attdev_fleet import (
    Agent,
    agent_cli,
    attest_run,
    attest_server,
    enrolled_tpm_device,
)

from support.server import RunningServer
from support.tools import require_tools
from support.waiting import wait_for
from trustfleet.agent.platform.measured_boot import DeviceTpm, recorded_pid

pytestmark = pytest.mark.integration


@dataclass
class Running:
    server: RunningServer
    device: Path
    first: Agent


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """A TPM device whose agent runs (boot loop, measured boot, attester)."""
    require_tools("mosquitto", "swtpm", "tpm2_pcrextend")
    base = tmp_path_factory.mktemp("one-agent")
    with attest_server(base) as server:
        device = enrolled_tpm_device(server, base)
        first = Agent(device)
        first.start()
        try:
            wait_for(lambda: "connected to the broker" in first.log(), what="the first agent")
            yield Running(server=server, device=device, first=first)
        finally:
            assert first.stop() == 0, first.log()


@pytest.mark.parametrize(
    "entry", ["run", "update"], ids=["second_agent_run", "second_agent_update"]
)
def test_second_agent_never_touches_the_first_agents_tpm(running: Running, entry: str) -> None:
    device, first = running.device, running.first
    swtpm = recorded_pid(DeviceTpm(device).state_dir)
    assert swtpm is not None and first.proc is not None
    second = agent_cli(entry, "--device", device, *(["--once"] if entry == "run" else []))
    lines = [line for line in (second.stdout + second.stderr).splitlines() if line]
    assert second.returncode == 5, second.stdout + second.stderr
    assert len(lines) == 1 and f"pid {first.proc.pid}" in lines[0], lines
    assert recorded_pid(DeviceTpm(device).state_dir) == swtpm  # the same TPM, never cycled
    assert attest_run(running.server, device.name)["ok"]
    assert first.proc.poll() is None, first.log()
