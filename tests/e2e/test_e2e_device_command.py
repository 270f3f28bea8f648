"""``trustfleet device command``: a real server, a real agent, the answer read back.

The operator sends ``ping`` and ``report`` from the CLI; the agent answers on ``cmd/result``;
an ingest worker stores the answer in the command's row, which ``--wait`` reads back. The
inventory shows the device online, and ``device commands`` lists what was sent.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.server import TRUSTFLEET, RunningServer, running_server
from support.waiting import wait_for
from trustfleet.sim.process import ManagedProcess

pytestmark = pytest.mark.e2e

WAIT_S = 120
STOP_TIMEOUT_S = 30


@pytest.fixture
def device(tmp_path: Path) -> Iterator[tuple[RunningServer, str]]:
    """A running server and one provisioned device whose agent runs; stopped after."""
    with running_server(tmp_path) as server:
        made = server.cli_json(
            "factory", "provision", "--out", tmp_path / "devices", "--count", "1"
        )
        ((device_id, directory),) = [
            (d["device_id"], Path(d["directory"])) for d in made["devices"]
        ]
        argv = [TRUSTFLEET, "agent", "run", "--device", directory]
        agent = ManagedProcess(argv, log=tmp_path / "agent.log", name="agent").start()
        try:
            yield server, device_id
        finally:
            agent.stop(timeout_s=STOP_TIMEOUT_S)


def _online(server: RunningServer) -> list[Any]:
    return server.cli_json("device", "list", "--online", "--state", "enrolled")["devices"]


def test_ping_and_report_are_answered_and_listed(device: tuple[RunningServer, str]) -> None:
    server, device_id = device
    (row,) = wait_for(lambda: _online(server), what="the device online", timeout_s=WAIT_S)
    assert (row["id"], row["online"], row["attestation"]) == (device_id, True, "none")
    assert row["cert_not_after"] is not None and row["last_seen_at"] is not None
    ping = server.cli_json("device", "command", device_id, "ping", "--wait", "60s")
    assert (ping["state"], ping["ok"], ping["result"]) == ("answered", True, {"pong": True})
    text = server.cli("device", "command", device_id, "report", "--wait", "60s")
    assert text.returncode == 0, text.stderr
    assert "ok" in text.stdout and device_id in text.stdout
    sent = server.cli_json("device", "commands", device_id)["commands"]
    assert [(c["name"], c["state"]) for c in sent] == [("report", "answered"), ("ping", "answered")]
    (report,) = [c for c in sent if c["name"] == "report"]
    assert report["result"]["device_id"] == device_id
    assert report["actor"].startswith("operator:")
    unknown = server.cli("device", "command", "dev-unknown1", "ping")
    assert unknown.returncode != 0 and "not found" in unknown.stderr
