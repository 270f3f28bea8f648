"""``trustfleet agent run`` and ``trustfleet-agent run`` share one boot loop (issue 10 section 4).

Both call :func:`run_boot_loop`; the loop reboots a slot on trial whose agent fails; errors are
one line with the same exit code; only the simulation's entry point injects faults.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from trustfleet.agent import __main__ as agent_entry
from trustfleet.agent import _bootloop
from trustfleet.agent._bootloop import DEVICE_ENTRY, SIMULATED_MODULE, AgentEntry, LoopOutcome
from trustfleet.agent.platform.faults import NO_FAULTS, Faults
from trustfleet.cli.main import main as cli_main
from trustfleet.errors import Unavailable


class Rebooted(Exception):
    """Stands for the process being replaced (``os.execv``)."""


def _both(device: Path, *flags: str) -> dict[str, list[str]]:
    """The argv of the same ``run`` on both entry points."""
    return {
        "trustfleet-agent": ["run", "--device", str(device), *flags],
        "trustfleet agent": ["agent", "run", "--device", str(device), *flags],
    }


def _call(name: str, argv: list[str]) -> int:
    return agent_entry.main(argv) if name == "trustfleet-agent" else cli_main(argv)


@pytest.mark.parametrize("flags", [(), ("--once",), ("--once", "--json")])
def test_both_entry_points_run_the_same_boot_loop(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, flags: tuple[str, ...]
) -> None:
    calls: dict[str, dict[str, Any]] = {}

    def fake_loop(device: Path, **kwargs: Any) -> LoopOutcome:
        calls[current] = {"device": device, **{k: kwargs[k] for k in ("once", "as_json", "entry")}}
        return LoopOutcome(0, None)

    monkeypatch.setattr(agent_entry, "run_boot_loop", fake_loop)
    monkeypatch.setattr(_bootloop, "run_boot_loop", fake_loop)
    codes = {}
    for current, argv in _both(tmp_path, *flags).items():
        codes[current] = _call(current, argv)
    assert codes == {"trustfleet-agent": 0, "trustfleet agent": 0}
    lean, full = calls["trustfleet-agent"], calls["trustfleet agent"]
    assert lean == full
    assert lean["entry"] == DEVICE_ENTRY and lean["entry"].faults == NO_FAULTS


def test_a_missing_device_is_one_line_with_the_same_exit_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = {}
    for name, argv in _both(tmp_path / "nope").items():
        code = _call(name, argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error:") and "Traceback" not in err[0]
        results[name] = code
    assert results == {"trustfleet-agent": 3, "trustfleet agent": 3}


def _fake_device(monkeypatch: pytest.MonkeyPatch, *, trial: bool, error: bool) -> list[list[str]]:
    """Stub the device around run_boot_loop; the list receives the reboot's argv."""
    import trustfleet.agent._tpmhooks as hooks
    from trustfleet.agent import runner, settings

    reboots: list[list[str]] = []

    def run_agent(*_args: Any, **_kwargs: Any) -> int:
        if error:
            raise Unavailable("broker down", code="test.down")
        return 0

    def reexec(argv: list[str]) -> None:
        reboots.append(argv)
        raise Rebooted

    lock = SimpleNamespace(keep_across_exec=lambda _env: None)
    monkeypatch.setattr(settings, "load_device_settings", lambda d: SimpleNamespace(directory=d))
    monkeypatch.setattr(_bootloop, "hold_device", lambda _d: lock)
    monkeypatch.setattr(hooks, "power_on", lambda _d: True)
    monkeypatch.setattr(hooks, "power_off", lambda _d: None)
    monkeypatch.setattr(_bootloop, "boot_in_child", lambda _d, entry: SimpleNamespace(slot="b"))
    monkeypatch.setattr(_bootloop, "on_trial", lambda _d: trial)
    monkeypatch.setattr(runner, "run_agent", run_agent)
    monkeypatch.setattr(_bootloop, "reexec", reexec)
    return reboots


def _loop(device: Path, entry: AgentEntry) -> LoopOutcome:
    import threading

    stop = threading.Event()
    return _bootloop.run_boot_loop(
        device,
        once=True,
        as_json=True,
        stop=stop,
        now=lambda: None,
        entry=entry,  # type: ignore[arg-type,return-value]
    )


def test_a_failing_agent_on_a_trial_boot_reboots_the_same_entry_point(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    reboots = _fake_device(monkeypatch, trial=True, error=True)
    sim = AgentEntry(module=SIMULATED_MODULE, faults=Faults(spec="installing:error"))
    for entry in (DEVICE_ENTRY, sim):
        with pytest.raises(Rebooted):
            _loop(tmp_path, entry)
    device, simulated = reboots
    assert device == [sys.executable, "-m", "trustfleet.agent", "run", "--device",
                      str(tmp_path), "--once", "--json"]  # fmt: skip
    assert simulated[:3] == [sys.executable, "-m", SIMULATED_MODULE]
    assert simulated[-2:] == ["--faults", "installing:error"]


def test_a_failing_agent_off_trial_is_an_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    reboots = _fake_device(monkeypatch, trial=False, error=True)
    with pytest.raises(Unavailable):
        _loop(tmp_path, DEVICE_ENTRY)
    assert reboots == []


def test_the_device_entry_point_has_no_fault_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["update", "--device", str(tmp_path), "--faults", "installing:error"]
    with pytest.raises(SystemExit) as exited:
        agent_entry.main(argv)
    assert exited.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert cli_main(["agent", "update", "--device", str(tmp_path), "--faults", "x"]) == 2
    assert "--sim" in capsys.readouterr().err


def test_only_the_simulation_reads_faults_json(tmp_path: Path) -> None:
    (tmp_path / "faults.json").write_text(
        json.dumps({"health_check": "fail", "boot": "skip_verify"})
    )
    device = agent_entry._entry(SimpleNamespace(device=tmp_path, faults=""), simulated=False)
    assert device == DEVICE_ENTRY
    sim = agent_entry._entry(SimpleNamespace(device=tmp_path, faults="trial:error"), simulated=True)
    assert sim.module == SIMULATED_MODULE and sim.faults.boot_skip_verify
    assert sim.faults.health_check is not None and sim.faults.plan.faults[0].point == "trial"
    assert Faults.for_simulation(tmp_path / "elsewhere") == Faults()
