"""The device over MQTT 3.1.1 (``[mqtt] protocol = "3.1.1"``) against the real Mosquitto.

The link (:class:`~trustfleet.agent.link311.Mqtt311Link`) runs in a child process
(``link311_driver.py``: one SoftHSM2 configuration per process) with the device's LDevID and
its key in the device's SoftHSM2 token, through the broker's only device listener (mutual TLS
1.3: ``tls_version tlsv1.3``, ``require_certificate true``). Mosquitto's connection log names
the protocol of each client by its own enum ("p2" is MQTT 3.1.1, "p5" MQTT 5; calibrated with
``mosquitto_pub -V`` first): the tests check it.
The observer (``mosquitto_sub``) and the commands (``mosquitto_pub``) share no code with the
agent. The last test runs the whole agent (``trustfleet agent run``) over 3.1.1.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from agentfleet import Fleet
from agentkit import WAIT_S, AgentProcess, Observer, Proxy, publish

from support.server import run_cli
from support.waiting import wait_for
from trustfleet.broker import Broker
from trustfleet.sim.process import free_port, stop_group

pytestmark = pytest.mark.integration

DRIVER = Path(__file__).with_name("link311_driver.py")
P_MQTT311 = "2"
"""Mosquitto's ``mosq_p_mqtt311`` in its "New client connected ... (pN, ..." log line."""
STOP_S = 3.0
"""The bound given to ``stop`` (the driver's answer must come within it, plus slack)."""


class LinkProcess:
    """``link311_driver.py`` for one device: requests in, answers out, log in a file."""

    def __init__(self, device: Path, *, log: Path, **mqtt: object) -> None:
        self.log = log
        with log.open("ab") as sink:
            self.proc = subprocess.Popen(
                [sys.executable, str(DRIVER), str(device), json.dumps(mqtt)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=sink, text=True,
                start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )  # fmt: skip
        self._lines: queue.SimpleQueue[str] = queue.SimpleQueue()
        threading.Thread(target=self._read, daemon=True).start()
        assert self._answer(WAIT_S).get("ready"), self.text()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)

    def _answer(self, timeout_s: float) -> dict[str, Any]:
        try:
            return cast(dict[str, Any], json.loads(self._lines.get(timeout=timeout_s)))
        except queue.Empty:
            raise AssertionError(f"no answer within {timeout_s}s:\n{self.text()}") from None

    def call(self, op: str, *, answer_within_s: float = WAIT_S, **args: object) -> dict[str, Any]:
        """Send one request; its answer, which must come within ``answer_within_s``."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.proc.stdin.flush()
        return self._answer(answer_within_s)

    def state(self) -> dict[str, Any]:
        return self.call("state")

    def wait_state(self, what: str, check: Any) -> dict[str, Any]:
        return wait_for(lambda: s if check(s := self.state()) else None, what=what)

    def stop_and_release(self) -> dict[str, Any]:
        """``stop`` within its bound, then the link is garbage once dropped (weak relays)."""
        state = self.call("stop", timeout_s=STOP_S, answer_within_s=STOP_S + 5)
        assert not state["connected"]
        assert self.call("released", timeout_s=WAIT_S)["released"], self.text()
        return state

    def text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            assert self.proc.stdin is not None
            self.proc.stdin.close()  # the driver ends at EOF
        stop_group(self.proc, timeout_s=WAIT_S)  # type: ignore[arg-type]  # text mode


class HoldingProxy(Proxy):
    """A :class:`Proxy` that can hold what the broker sends (its PUBACKs) while it forwards
    what the device sends."""

    def __init__(self, *, port: int, target_port: int) -> None:
        self.downstream = threading.Event()
        self.downstream.set()
        super().__init__(port=port, target_port=target_port)

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:  # type: ignore[override]
        from_broker = src.getpeername()[1] == self.target[1]
        try:
            while data := src.recv(65536):
                if from_broker:
                    self.downstream.wait(WAIT_S)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)


@pytest.fixture(scope="module")
def calibrated(fleet: Fleet) -> None:
    """Mosquitto logs P_MQTT311 for a 3.1.1 client and something else for an MQTT 5 one."""
    seen: dict[str, list[str]] = {}
    for version in ("mqttv311", "mqttv5"):
        client_id = f"{fleet.service.name}-{version}-{uuid.uuid4().hex[:8]}"
        args = ["mosquitto_pub", "-h", "localhost", "-p", str(fleet.broker_port)]
        args += ["--cafile", str(fleet.ca_bundle), "--cert", str(fleet.service.cert)]
        args += ["--key", str(fleet.service.key), "--tls-version", "tlsv1.3", "-i", client_id]
        args += ["-V", version, "-q", "1", "-t", "tf/v1/d/calibration/cmd", "-m", "{}"]
        result = subprocess.run(args, capture_output=True, text=True, timeout=WAIT_S, check=False)
        assert result.returncode == 0, result.stderr
        seen[version] = _protocols(fleet, client_id)
    assert seen["mqttv311"] == [P_MQTT311] and seen["mqttv5"] not in ([], [P_MQTT311]), seen


@pytest.fixture(scope="module")
def device(fleet: Fleet, calibrated: None) -> Path:
    """One enrolled device whose device.toml says ``protocol = "3.1.1"``."""
    directory = fleet.device(mqtt={"protocol": "3.1.1", "keepalive_s": 10})
    result = run_cli("agent", "enroll", "--device", directory, "--json")
    assert result.returncode == 0, result.stderr
    return directory


@pytest.fixture
def cleanup() -> Iterator[list[LinkProcess | Observer | Proxy | AgentProcess]]:
    """Things to end whatever happens, each by its own pid or group."""
    items: list[LinkProcess | Observer | Proxy | AgentProcess] = []
    yield items
    for item in reversed(items):
        item.stop() if isinstance(item, AgentProcess) else item.close()


def _broker(fleet: Fleet) -> Broker:
    return cast(Broker, fleet.broker)


def _protocols(fleet: Fleet, client_id: str) -> list[str]:
    """Mosquitto's protocol of each connection of ``client_id`` (see :data:`P_MQTT311`)."""
    text = _broker(fleet).config.paths.log.read_text(encoding="utf-8", errors="replace")
    pattern = rf"New client connected from \S+ as {re.escape(client_id)} \(p(\d+),"
    return re.findall(pattern, text)


def _observe(fleet: Fleet, device: Path) -> Observer:
    return Observer(
        port=fleet.broker_port, ca=fleet.ca_bundle, cert=fleet.service.cert,
        key=fleet.service.key, topics=[f"tf/v1/d/{device.name}/telemetry"],
    )  # fmt: skip


def _command(fleet: Fleet, device: Path, *, leaf: str = "cmd") -> str:
    cid = str(uuid.uuid4())
    publish(
        port=fleet.broker_port, ca=fleet.ca_bundle, cert=fleet.service.cert,
        key=fleet.service.key, topic=f"tf/v1/d/{device.name}/{leaf}",
        payload=json.dumps({"id": cid, "name": "ping", "args": {}}),
    )  # fmt: skip
    return cid


def _seqs_of(observer: Observer, marker: str = "mqtt311") -> list[int]:
    return [int(p["seq"]) for p in observer.of("telemetry") if p.get("marker") == marker]


def _link(device: Path, cleanup: list[Any], tmp_path: Path, **mqtt: object) -> LinkProcess:
    link = LinkProcess(device, log=tmp_path / f"link-{free_port()}.log", **mqtt)
    cleanup.append(link)
    return link


def test_mqtt311_connects_delivers_in_order_and_settles_on_puback(
    fleet: Fleet, device: Path, cleanup: list[Any], tmp_path: Path
) -> None:
    before = _protocols(fleet, device.name)
    proxy = HoldingProxy(port=free_port(), target_port=fleet.broker_port)
    cleanup.append(proxy)
    observer = _observe(fleet, device)
    cleanup.append(observer)
    link = _link(device, cleanup, tmp_path, port=proxy.port)
    link.call("start")
    assert "error" not in link.call("wait_connected", timeout_s=WAIT_S), link.text()
    assert _protocols(fleet, device.name)[len(before) :] == [P_MQTT311], (
        "not MQTT 3.1.1 on the wire"
    )

    proxy.downstream.clear()  # the broker's PUBACKs wait in the proxy
    link.call("put", seqs=list(range(1, 6)))
    assert link.call("pump")["taken"] == 5
    assert observer.wait_for(lambda _m: len(_seqs_of(observer)) >= 5), link.text()
    held = link.state()
    assert held["queued"] == 5 and held["delivered"] == 0  # at the broker, but no PUBACK yet
    assert link.call("pump")["taken"] == 0  # in flight: not sent twice
    proxy.downstream.set()
    settled = link.wait_state("the PUBACKs", lambda s: s["queued"] == 0)
    assert settled["delivered"] == 5
    assert _seqs_of(observer) == [1, 2, 3, 4, 5]
    assert link.stop_and_release()["connections"] == 1


def test_mqtt311_receives_commands_and_resubscribes_after_a_kick(
    fleet: Fleet, device: Path, cleanup: list[Any], tmp_path: Path
) -> None:
    before = _protocols(fleet, device.name)
    observer = _observe(fleet, device)
    cleanup.append(observer)
    link = _link(device, cleanup, tmp_path)
    link.call("start")
    assert "error" not in link.call("wait_connected", timeout_s=WAIT_S), link.text()
    first = _command(fleet, device)
    ota = _command(fleet, device, leaf="ota/cmd")
    link.wait_state("both commands", lambda s: len(s["commands"]) == 2)

    _broker(fleet).kick(device.name)
    link.call("put", seqs=list(range(1, 4)))  # queued while the link is down or coming back
    link.wait_state("the reconnection", lambda s: s["connections"] == 2 and s["connected"])
    second = _command(fleet, device)  # clean session: only a resubscribed link gets it
    state = link.wait_state("the second command", lambda s: len(s["commands"]) == 3)
    ids = [json.loads(c.removeprefix("ota:"))["id"] for c in state["commands"]]
    assert ids == [first, ota, second]
    assert state["commands"][1].startswith("ota:")
    link.call("deliver", timeout_s=WAIT_S)
    assert observer.wait_for(lambda _m: sorted(set(_seqs_of(observer))) == [1, 2, 3])
    assert _protocols(fleet, device.name)[len(before) :] == [P_MQTT311, P_MQTT311]
    link.stop_and_release()


def test_mqtt311_loses_nothing_when_the_broker_restarts(
    fleet: Fleet, device: Path, cleanup: list[Any], tmp_path: Path
) -> None:
    broker = _broker(fleet)
    proxy = HoldingProxy(port=free_port(), target_port=fleet.broker_port)
    cleanup.append(proxy)
    link = _link(device, cleanup, tmp_path, port=proxy.port)
    link.call("start")
    assert "error" not in link.call("wait_connected", timeout_s=WAIT_S), link.text()
    proxy.downstream.clear()  # 1-3 reach the broker, which dies before acknowledging them
    link.call("put", seqs=[1, 2, 3])
    assert link.call("pump")["taken"] == 3
    pid, restarts = broker.pid, broker.restarts
    assert pid is not None
    os.kill(pid, signal.SIGKILL)  # the fixture's Mosquitto; its supervisor restarts it
    link.wait_state("the disconnection", lambda s: not s["connected"])
    proxy.cut()  # what the old connection still held is gone with it
    proxy.downstream.set()
    proxy.restore()
    link.call("put", seqs=[4, 5, 6])  # queued while offline
    wait_for(lambda: broker.restarts > restarts and broker.pid, what="Mosquitto restarted")
    observer = _observe(fleet, device)  # subscribed before the link publishes again
    cleanup.append(observer)
    link.wait_state("the reconnection", lambda s: s["connected"] and s["connections"] == 2)
    delivered = link.call("deliver", timeout_s=WAIT_S)
    assert delivered["queued"] == 0 and delivered["delivered"] == 6, link.text()
    assert observer.wait_for(lambda _m: set(_seqs_of(observer)) == {1, 2, 3, 4, 5, 6})
    arrivals = list(dict.fromkeys(_seqs_of(observer)))
    assert arrivals == sorted(arrivals), arrivals
    link.stop_and_release()


def test_mqtt311_retries_the_first_connect_until_the_broker_comes(
    fleet: Fleet, device: Path, cleanup: list[Any], tmp_path: Path
) -> None:
    port = free_port()  # nothing listens there yet
    link = _link(device, cleanup, tmp_path, port=port, backoff_initial_s=0.2, backoff_max_s=0.8)
    link.call("start")
    wait_for(
        lambda: link.text().count("cannot connect to the broker") >= 3,
        what="three refused attempts",
    )
    failing = link.state()
    assert not failing["connected"] and failing["connections"] == 0 and failing["last_error"]
    proxy = Proxy(port=port, target_port=fleet.broker_port)  # the broker "comes up"
    cleanup.append(proxy)
    assert "error" not in link.call("wait_connected", timeout_s=WAIT_S), link.text()
    link.call("put", seqs=[1])
    assert link.call("deliver", timeout_s=WAIT_S)["delivered"] == 1
    assert _protocols(fleet, device.name)[-1] == P_MQTT311
    assert link.stop_and_release()["connections"] == 1


def test_mqtt311_stop_is_bounded_while_a_first_connect_hangs(
    device: Path, cleanup: list[Any], tmp_path: Path
) -> None:
    # A listener that never accepts: TCP completes in the kernel, the TLS handshake never
    # does, so the first connect is under way when stop is called.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        link = _link(device, cleanup, tmp_path, port=silent.getsockname()[1], connect_timeout_s=8)
        link.call("start")
        wait_for(lambda: "connecting to mqtts://" in link.text(), what="the first attempt")
        state = link.call("stop", timeout_s=STOP_S, answer_within_s=STOP_S + 5)
        assert not state["connected"] and state["connections"] == 0
    # The attempt ends on its own timeout; the link's thread then lets go of the link.
    assert link.call("released", timeout_s=WAIT_S)["released"], link.text()


def test_mqtt311_logs_a_refused_subscription(
    fleet: Fleet, device: Path, cleanup: list[Any], tmp_path: Path
) -> None:
    broker = _broker(fleet)
    broker.quarantine(device.name)  # cmd is refused (0x80); ota/ stays allowed
    try:
        link = _link(device, cleanup, tmp_path)
        link.call("start")
        assert "error" not in link.call("wait_connected", timeout_s=WAIT_S), link.text()
        refused = f"the broker refused tf/v1/d/{device.name}/cmd (0x80)"
        wait_for(lambda: refused in link.text(), what="the refusal in the log")
        assert f"refused tf/v1/d/{device.name}/ota/cmd" not in link.text()
        _command(fleet, device, leaf="ota/cmd")
        link.wait_state("the OTA command", lambda s: len(s["commands"]) == 1)
        link.stop_and_release()
    finally:
        broker.release(device.name)


def test_agent_runs_over_mqtt311(fleet: Fleet, cleanup: list[Any]) -> None:
    directory = fleet.device(mqtt={"protocol": "3.1.1"})
    observer = Observer(
        port=fleet.broker_port, ca=fleet.ca_bundle, cert=fleet.service.cert,
        key=fleet.service.key,
        topics=[f"tf/v1/d/{directory.name}/{leaf}" for leaf in ("events", "cmd/result")],
    )  # fmt: skip
    cleanup.append(observer)
    agent = AgentProcess(directory)
    cleanup.append(agent)
    assert observer.wait_for(lambda m: any(p.get("type") == "agent.started" for _, p in m)), (
        agent.text()
    )
    ping = _command(fleet, directory)
    assert observer.wait_for(lambda m: any(p.get("id") == ping for _, p in m)), agent.text()
    (answer,) = [r for r in observer.of("cmd/result") if r["id"] == ping]
    assert answer["ok"] is True and answer["result"] == {"pong": True}
    assert agent.terminate() == 0, agent.text()
    assert _protocols(fleet, directory.name) == [P_MQTT311], agent.text()
    assert "MQTT 3.1.1" in agent.text() and "Traceback" not in agent.text()
