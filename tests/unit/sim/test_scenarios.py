"""The pure parts of the harness's scenarios: stage results and the one error boundary."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from trustfleet.errors import NotFound, Unavailable
from trustfleet.sim.fleet import SimFleet
from trustfleet.sim.scenarios import DEMO, Observed, StageResult, one_line, stage

DEMO_NAMES = ["init", "release", "provision", "serve", "enroll", "telemetry", "reenroll",
              "update", "rollback", "attest", "quarantine", "heal", "revoke", "lwm2m", "audit",
              "detect", "console", "decommission"]  # fmt: skip


def _fleet(tmp_path: Path) -> SimFleet:
    return SimFleet(tmp_path / "demo")


def test_the_demo_has_its_stages_in_order() -> None:
    assert [s.name for s in DEMO] == DEMO_NAMES


def test_a_stage_whose_checks_hold_is_ok(tmp_path: Path) -> None:
    @stage("fine")
    def body(_fleet: SimFleet) -> Observed:
        return Observed({"a": True, "b": True}, {"x": 1})

    result = body(_fleet(tmp_path))
    assert (result.name, result.ok, result.reason, dict(result.details)) == (
        "fine",
        True,
        "ok",
        {"x": 1},
    )
    assert result.seconds >= 0
    assert result.to_json() == {"name": "fine", "ok": True, "seconds": result.seconds,
                                "details": {"x": 1}}  # fmt: skip


def test_a_failed_check_is_named_in_the_reason(tmp_path: Path) -> None:
    @stage("partly")
    def body(_fleet: SimFleet) -> Observed:
        return Observed({"kept": True, "the campaign completed": False, "slot a": False})

    result = body(_fleet(tmp_path))
    assert not result.ok
    assert result.reason == "did not hold: the campaign completed; slot a"
    assert result.to_json()["details"] == {"error": result.reason}


ERRORS = {
    "trustfleet-error": (Unavailable("the broker is down", hint="start it"), "the broker is down"),
    "not-found": (NotFound("no device plays 'x'"), "no device plays 'x'"),
    "os-error": (FileNotFoundError(2, "No such file", "/x/ldevid.pem"), "FileNotFoundError"),
    "key-error": (KeyError("boot_slot"), "KeyError: 'boot_slot'"),
    "multi-line": (RuntimeError("first\nsecond\nthird"), "RuntimeError: first"),
    "timeout": (subprocess.TimeoutExpired(["trustfleet", "agent", "run"], 90), "timed out"),
}


@pytest.mark.parametrize(("error", "expected"), ERRORS.values(), ids=ERRORS.keys())
def test_any_error_is_a_failed_stage_with_one_line(
    tmp_path: Path, error: Exception, expected: str
) -> None:
    @stage("broken")
    def body(_fleet: SimFleet) -> Observed:
        raise error

    result = body(_fleet(tmp_path))
    assert isinstance(result, StageResult)
    assert not result.ok
    assert expected in result.reason
    assert "\n" not in result.reason and "Traceback" not in result.reason
    assert result.details == {"error": result.reason}


def test_ctrl_c_is_not_a_stage_result(tmp_path: Path) -> None:
    @stage("interrupted")
    def body(_fleet: SimFleet) -> Observed:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        body(_fleet(tmp_path))


def test_one_line_is_bounded() -> None:
    assert len(one_line(ValueError("x" * 5000))) <= 300


def test_a_stage_needing_a_server_fails_readably_without_one(tmp_path: Path) -> None:
    serve = next(s for s in DEMO if s.name == "serve")
    result = serve(_fleet(tmp_path))
    assert not result.ok
    assert result.reason.startswith("the fleet has no server yet")


def test_the_audit_stage_fails_readably_without_a_server(tmp_path: Path) -> None:
    audit = next(s for s in DEMO if s.name == "audit")
    result = audit(_fleet(tmp_path))
    assert not result.ok
    assert result.reason.startswith("the fleet has no server yet")
