"""The long-running agent: commands, renewal with contiguous telemetry, the offline queue, stop."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from agentfleet import Fleet
from agentkit import AgentProcess, Observer, Proxy, publish
from cryptography import x509

from support.server import run_cli
from trustfleet.sim.process import free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def running() -> Iterator[list[AgentProcess | Observer | Proxy]]:
    """Things to clean up whatever happens (killed by their own pid/group)."""
    items: list[AgentProcess | Observer | Proxy] = []
    yield items
    for item in reversed(items):
        item.stop() if isinstance(item, AgentProcess) else item.close()


def _observe(fleet: Fleet, device: Path, leaves: list[str]) -> Observer:
    return Observer(
        port=fleet.broker_port, ca=fleet.ca_bundle, cert=fleet.service.cert,
        key=fleet.service.key, topics=[f"tf/v1/d/{device.name}/{leaf}" for leaf in leaves],
    )  # fmt: skip


def _command(fleet: Fleet, device: Path, name: str) -> str:
    cid = str(uuid.uuid4())
    publish(
        port=fleet.broker_port, ca=fleet.ca_bundle, cert=fleet.service.cert,
        key=fleet.service.key, topic=f"tf/v1/d/{device.name}/cmd",
        payload=json.dumps({"id": cid, "name": name, "args": {}}),
    )  # fmt: skip
    return cid


def _contiguous(seqs: list[int]) -> bool:
    return bool(seqs) and set(seqs) == set(range(1, max(seqs) + 1))


def _first_arrivals(seqs: list[int]) -> list[int]:
    seen: dict[int, None] = {}
    for seq in seqs:
        seen.setdefault(seq, None)
    return list(seen)


def test_agent_answers_ping_and_report_and_stops_on_sigterm(
    fleet: Fleet, running: list[AgentProcess | Observer | Proxy]
) -> None:
    device = fleet.device()
    observer = _observe(fleet, device, ["cmd/result", "events"])
    running.append(observer)
    agent = AgentProcess(device)
    running.append(agent)
    assert observer.wait_for(lambda m: any(p.get("type") == "agent.started" for _, p in m)), (
        agent.text()
    )
    ping, report = _command(fleet, device, "ping"), _command(fleet, device, "report")
    unknown = _command(fleet, device, "reboot-everything")
    assert observer.wait_for(lambda m: len([t for t, _ in m if t.endswith("cmd/result")]) >= 3)
    results = {r["id"]: r for r in observer.of("cmd/result")}
    assert results[ping]["ok"] is True and results[ping]["result"] == {"pong": True}
    state = results[report]["result"]
    assert state["device_id"] == device.name and state["model"]
    assert state["ldevid_serial"] and state["ldevid_not_after"]
    expected = {"agent_version", "uptime_s", "queue_depth", "queue_dropped", "reconnects"}
    assert expected <= set(state)
    assert results[unknown]["ok"] is False and "unknown command" in results[unknown]["error"]
    assert all({"ts", "seq"} <= set(r) for r in results.values())
    assert agent.terminate() == 0, agent.text()
    assert agent.proc.poll() == 0
    assert "Traceback" not in agent.text()


def test_agent_reenrolls_without_losing_telemetry(
    fleet: Fleet, running: list[AgentProcess | Observer | Proxy]
) -> None:
    device = fleet.device()
    first = run_cli("agent", "enroll", "--device", device, "--json")
    assert first.returncode == 0, first.stderr
    short_serial = fleet.shorten_ldevid(device, due_in_s=6, fraction=0.6667)
    observer = _observe(fleet, device, ["telemetry", "events", "cmd/result"])
    running.append(observer)
    agent = AgentProcess(device)
    running.append(agent)

    def renewed_then_three(messages: list[tuple[str, dict[str, object]]]) -> bool:
        types = [p.get("type") if t.endswith("events") else t.rsplit("/")[-1] for t, p in messages]
        if "agent.reenrolled" not in types:
            return False
        return types[types.index("agent.reenrolled") :].count("telemetry") >= 3

    assert observer.wait_for(renewed_then_three), agent.text()
    assert agent.terminate() == 0, agent.text()
    on_disk = x509.load_pem_x509_certificate((device / "ldevid.pem").read_bytes())
    assert format(on_disk.serial_number, "x") != short_serial
    (event,) = [e for e in observer.of("events") if e["type"] == "agent.reenrolled"]
    assert event["details"]["serial"] == format(on_disk.serial_number, "x")
    seqs = observer.seqs()
    assert _contiguous(seqs), seqs
    telemetry_before = [p for p in observer.of("telemetry") if p["seq"] < event["seq"]]
    assert telemetry_before, "no telemetry with the first certificate"
    assert "re-enrolled" in agent.text()


@pytest.mark.parametrize(
    ("queue_max", "expect_drops"), [(1000, False), (3, True)], ids=["kept", "oldest_dropped"]
)
def test_agent_offline_queue(
    fleet: Fleet,
    running: list[AgentProcess | Observer | Proxy],
    queue_max: int,
    expect_drops: bool,
) -> None:
    proxy = Proxy(port=free_port(), target_port=fleet.broker_port)
    running.append(proxy)
    device = fleet.device(
        port=proxy.port,
        mqtt={"telemetry_interval_s": 0.3, "queue_max_messages": queue_max, "backoff_max_s": 0.5},
    )
    observer = _observe(fleet, device, ["telemetry", "events", "cmd/result"])
    running.append(observer)
    agent = AgentProcess(device)
    running.append(agent)
    assert observer.wait_for(lambda m: len(m) >= 3), agent.text()
    proxy.cut()
    seen = len(observer.seqs())
    time.sleep(3)  # offline: the agent queues ~10 messages (their count is not asserted)
    assert len(observer.seqs()) <= seen + 1  # at most one was already on the wire
    proxy.restore()
    # Commands reach only a connected agent (clean session): wait for its delivery first.
    assert observer.wait_for(lambda m: len(m) >= seen + 6), agent.text()
    report = _command(fleet, device, "report")
    assert observer.wait_for(lambda m: any(p.get("id") == report for _, p in m)), agent.text()
    (answer,) = [r for r in observer.of("cmd/result") if r["id"] == report]
    assert agent.terminate() == 0, agent.text()
    seqs = observer.seqs()
    arrivals = _first_arrivals(seqs)
    state = answer["result"]
    assert state["reconnects"] >= 1
    if expect_drops:
        missing = set(range(1, max(seqs) + 1)) - set(seqs)
        assert state["queue_dropped"] >= 1
        assert 1 <= len(missing) <= state["queue_dropped"]
    else:
        assert state["queue_dropped"] == 0
        assert _contiguous(seqs), seqs
        assert arrivals == sorted(arrivals), arrivals
