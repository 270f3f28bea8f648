"""``SimAgent(agent_command=…)`` runs another installation's agent: ``<command> run --device
DIR`` in the device folder, without ``PYTHONPATH``; by default the simulated entry point.

The "agent" here is a real child process (this interpreter printing what it was given), so
the argv, working folder and environment are the ones the harness really passes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from trustfleet.sim.agent import SIMULATED_ENTRY, SimAgent
from trustfleet.sim.process import wait_until

_ECHO = (
    "import json, os, sys; print(json.dumps({'argv': sys.argv[1:], 'cwd': os.getcwd(), "
    "'pythonpath': os.environ.get('PYTHONPATH')}))"
)


def _ran(agent: SimAgent) -> dict[str, object]:
    wait_until(lambda: not agent.running, timeout_s=30, what="the echo agent to exit")
    doc: dict[str, object] = json.loads(agent.log.read_text("utf-8").strip().splitlines()[-1])
    return doc


def test_another_installations_agent_runs_in_the_device_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", "/checkout/src")
    device = tmp_path / "dev-0001"
    device.mkdir()
    agent = SimAgent(device, agent_command=[sys.executable, "-c", _ECHO])
    try:
        seen = _ran(agent.start(summary=True))
    finally:
        agent.stop()
    assert seen == {
        "argv": ["run", "--json", "--device", str(device)],
        "cwd": str(device),
        "pythonpath": None,
    }


def test_the_default_is_the_simulated_entry_point(tmp_path: Path) -> None:
    device = tmp_path / "dev-0002"
    device.mkdir()
    agent = SimAgent(device)  # no device.toml: the simulated agent exits with one error line
    try:
        agent.start()
        wait_until(lambda: not agent.running, timeout_s=60, what="the simulated agent to exit")
        assert agent.process is not None
        argv, env, cwd = agent.process.argv, agent.process.env, agent.process.cwd
    finally:
        agent.stop()
    assert argv == [sys.executable, "-m", SIMULATED_ENTRY, "run", "--device", str(device)]
    assert (env, cwd) == (None, None)  # this interpreter's environment, as before
