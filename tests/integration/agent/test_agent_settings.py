"""Wrong device settings: one readable line, a non-zero exit, no traceback."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from agentfleet import Fleet

from support.server import run_cli

pytestmark = pytest.mark.integration


def _drop_port(device: Path) -> None:
    text = (device / "device.toml").read_text()
    (device / "device.toml").write_text(re.sub(r"(?m)^port = .*\n", "", text))


def _no_mqtt(device: Path) -> None:
    text = (device / "device.toml").read_text()
    (device / "device.toml").write_text(text.split("\n[mqtt]")[0] + "\n")


def _bad_est_url(device: Path) -> None:
    text = (device / "device.toml").read_text()
    (device / "device.toml").write_text(re.sub(r'est_url = ".*"', 'est_url = "ftp://x"', text))


def _pin_0644(device: Path) -> None:
    (device / "secrets" / "token.pin").chmod(0o644)


CASES = [
    (_drop_port, 3, "mqtt.port"),
    (_no_mqtt, 3, "no [mqtt] section"),
    (_bad_est_url, 3, "server.est_url"),
    (_pin_0644, 3, "chmod 600"),
]


@pytest.mark.parametrize(
    ("breaker", "code", "needle"), CASES, ids=["no_port", "no_mqtt", "bad_est_url", "pin_0644"]
)
def test_agent_wrong_settings(fleet: Fleet, breaker: object, code: int, needle: str) -> None:
    device = fleet.device()
    breaker(device)  # type: ignore[operator]
    result = run_cli("agent", "run", "--device", device, "--once")
    assert result.returncode == code, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:") and needle in lines[0], lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    assert not (device / "ldevid.pem").exists()
