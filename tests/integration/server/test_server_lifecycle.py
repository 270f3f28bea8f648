"""``server run``'s lifecycle (issue 9 §5 and the supervision of §1), with the real CLI.

One home, one server; a taken port is one line before anything starts; nothing outlives a
``kill -9`` and a later run stops only what is provably its own; a worker that keeps dying
degrades the service instead of ending it; ``/readyz`` names what is down; Ctrl-C during
start-up exits 130 with one line.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from lifecyclekit import (
    WAIT_S,
    Home,
    Server,
    alive,
    listening,
    make_home,
    serving,
    session_pids,
    wait_for,
)

from support.server import run_cli
from trustfleet.sim.process import free_port

pytestmark = pytest.mark.integration

COMPONENTS = {
    "store",
    "broker",
    "broker.admin",
    "ingest.subscribed",
    "workers.https",
    "workers.ingest",
    "workers.campaigns",
    "workers.attest",
    "workers.audit",
    "workers.monitor",
}


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    text = result.stdout + result.stderr
    assert "Traceback" not in text, text
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    return lines[0]


def _readyz(home: Home) -> tuple[int, dict[str, object]]:
    try:
        response = home.get("/readyz")
    except httpx.TransportError as exc:  # the HTTPS worker may still be starting
        return 0, {"down": [], "error": str(exc)}
    return response.status_code, response.json()


def _down(home: Home) -> list[str]:
    status, doc = _readyz(home)
    return [str(name) for name in doc["down"]] if status == 503 else []  # type: ignore[attr-defined]


def _crashlooping(home: Home, name: str) -> bool:
    status, doc = _readyz(home)
    components = doc.get("components", []) if status == 503 else []
    return any(
        c["name"] == name and "crash-looping" in c["detail"]
        for c in components  # type: ignore[attr-defined]
    )


def _admin_socket(home: Home) -> Path:
    sockets = [p for p in (home.path / "broker").rglob("*") if p.is_socket()]
    assert len(sockets) == 1, sockets
    return sockets[0]


# -- finding 5.1: a second server on one home -----------------------------------------------


def test_second_server_on_one_home_is_refused(tmp_path: Path) -> None:
    home = make_home(tmp_path)
    with serving(home, log=tmp_path / "first.log") as first:
        conf = home.path / "broker" / "mosquitto.conf"
        before = (conf.stat().st_mtime_ns, _admin_socket(home))
        other_api, other_mqtt = str(free_port()), str(free_port())
        result = run_cli("server", "run", "--home", home.path, "--api-port", other_api,
                         "--mqtt-port", other_mqtt)  # fmt: skip
        assert result.returncode == 5, result.stderr
        line = _one_line(result)
        assert f"pid {first.proc.pid}" in line, line
        assert (conf.stat().st_mtime_ns, _admin_socket(home)) == before
        assert wait_for(lambda: _readyz(home)[0] == 200), _readyz(home)
    assert (home.run_dir / "server.lock").stat().st_mode & 0o777 == 0o600


# -- finding 5.3: taken ports ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("which", "reuse_port"),
    [("api", False), ("api", True), ("mqtt", False)],
    ids=["api_port_taken", "api_port_taken_with_reuseport", "mqtt_port_taken"],
)
def test_taken_port_is_one_line_before_anything_starts(
    tmp_path: Path, which: str, reuse_port: bool
) -> None:
    home = make_home(tmp_path)
    port = home.api_port if which == "api" else home.mqtt_port
    with listening(port, reuse_port=reuse_port):
        result = run_cli("server", "run", "--home", home.path)
    assert result.returncode == 8, result.stdout + result.stderr
    line = _one_line(result)
    assert f":{port}" in line and "in use" in line, line
    assert not (home.path / "broker" / "mosquitto.conf").exists()  # nothing was started


# -- finding 5.2: kill -9 of server run ------------------------------------------------------


def test_kill_9_leaves_no_child_and_the_next_start_serves(tmp_path: Path) -> None:
    home = make_home(tmp_path)
    server = Server(home, log=tmp_path / "killed.log")
    try:
        server.wait_serving()
        assert wait_for(lambda: len(home.children()) == 7), home.children()
        children = home.children()  # 6 workers + mosquitto
        os.kill(server.proc.pid, signal.SIGKILL)
        server.proc.wait(WAIT_S)
        assert wait_for(lambda: not [p for p in children.values() if alive(p)]), {
            name: pid for name, pid in children.items() if alive(pid)
        }
    finally:
        server.stop()
    with serving(home, log=tmp_path / "again.log"):
        assert wait_for(lambda: _readyz(home)[0] == 200), _readyz(home)


_LEFTOVER_CASES = {
    "recorded_and_names_this_home": True,
    "names_another_home": False,
    "pid_reused_other_start_time": False,
}


@pytest.fixture(scope="module")
def leftovers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, int]]:
    """A record left by a killed run (children that lost PR_SET_PDEATHSIG), then a new run."""
    tmp = tmp_path_factory.mktemp("leftovers")
    home = make_home(tmp)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    for case in _LEFTOVER_CASES:
        owner = "/srv/another-home" if case == "names_another_home" else str(home.path)
        env = {**os.environ, "TRUSTFLEET_OWNER_DIR": owner}
        procs[case] = subprocess.Popen(["sleep", "600"], env=env, start_new_session=True)
    entries = []
    for case, proc in procs.items():
        stat = Path(f"/proc/{proc.pid}/stat").read_bytes().rsplit(b")", 1)[-1].split()
        ticks = int(stat[19]) + (7 if case == "pid_reused_other_start_time" else 0)
        entries.append({"name": case, "pid": proc.pid, "start_ticks": ticks})
    home.run_dir.mkdir(mode=0o700, exist_ok=True)
    (home.run_dir / "children.json").write_text(json.dumps({"children": entries}))
    try:
        with serving(home, log=tmp / "server.log"):
            yield {case: proc.pid for case, proc in procs.items()}
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
            proc.wait(WAIT_S)


@pytest.mark.parametrize("case", list(_LEFTOVER_CASES), ids=list(_LEFTOVER_CASES))
def test_killed_run_leftovers_stopped_only_if_still_theirs(
    leftovers: dict[str, int], case: str
) -> None:
    pid = leftovers[case]
    if _LEFTOVER_CASES[case]:
        assert wait_for(lambda: not alive(pid)), f"{case}: pid {pid} still runs"
    else:
        assert alive(pid), f"{case}: pid {pid} was signalled"


# -- finding 1 (supervision): a worker kind that keeps dying ---------------------------------


_MISSING_PIN_KEY = (
    '"pkcs11:token=tf-service;object=svc-ingest;type=private?pin-source=file:secrets/no-such.pin"'
)
_CRASH_CASES = {
    # kill -9 of the ingest worker, six times: the sixth crash ended `server run` before.
    "ingest_killed_six_times": {},
    # A setting that makes every MQTT worker (ingest, campaigns, attest) fail at start.
    "service_key_pin_missing": {"broker.service_key": _MISSING_PIN_KEY},
}


@pytest.mark.parametrize("case", list(_CRASH_CASES), ids=list(_CRASH_CASES))
def test_crashlooping_worker_degrades_and_never_stops_the_service(
    tmp_path: Path, case: str
) -> None:
    home = make_home(
        tmp_path,
        {
            "supervision.restart_backoff_s": "0.1",
            "supervision.restart_backoff_max_s": "1.0",
            "supervision.restart_window_s": "600.0",
            "supervision.status_interval_s": "0.5",
            **_CRASH_CASES[case],
        },
    )
    with serving(home, log=tmp_path / "server.log") as server:
        last = 0
        for _ in range(6 if case == "ingest_killed_six_times" else 0):
            assert wait_for(lambda old=last: home.children().get("ingest#0", old) != old)
            last = home.children()["ingest#0"]
            os.kill(last, signal.SIGKILL)
        degraded = wait_for(lambda: _crashlooping(home, "workers.ingest"), timeout_s=2 * WAIT_S)
        assert degraded, (_readyz(home), server.text())
        assert "workers.ingest" in _down(home)
        assert server.proc.poll() is None, server.text()
        assert home.get("/healthz").status_code == 200
        assert home.get("/.well-known/est/cacerts").status_code == 200
        subjects = {e.subject for e in home.events("service.degraded")}
        assert "service:workers.ingest" in subjects, subjects
        assert "Traceback" not in server.text(), server.text()


# -- finding 5.4: readiness ------------------------------------------------------------------


def test_readiness_reports_each_component_and_a_lost_admin_socket(tmp_path: Path) -> None:
    home = make_home(tmp_path, {"supervision.status_interval_s": "0.5"})
    with serving(home, log=tmp_path / "server.log"):
        assert wait_for(lambda: _readyz(home)[0] == 200), _readyz(home)
        _status, doc = _readyz(home)
        names = {c["name"] for c in doc["components"]}  # type: ignore[attr-defined]
        assert names == COMPONENTS, names
        _admin_socket(home).unlink()  # what a second server's broker start did to the first
        assert wait_for(lambda: _down(home) == ["broker.admin"]), _readyz(home)
        assert home.get("/healthz").status_code == 200  # liveness stays


# -- finding 5.5: Ctrl-C during start-up -----------------------------------------------------


def test_ctrl_c_during_start_up_exits_130_with_one_line(tmp_path: Path) -> None:
    home = make_home(tmp_path)
    server = Server(home, log=tmp_path / "server.log")
    try:
        wait_for(lambda: "https#0" in home.children() or server.proc.poll() is not None)
        os.killpg(server.proc.pid, signal.SIGINT)  # a terminal's Ctrl-C: the whole group
        code = server.proc.wait(WAIT_S)
        # Before the cleanup below, which kills whatever is left of the group.
        left = [] if wait_for(lambda: session_pids(server.pid) == []) else session_pids(server.pid)
    finally:
        server.stop()
    text = server.text()
    assert code == 130, text
    assert "Traceback" not in text, text
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("stopped: interrupted"), text
    assert left == [], left


def test_readiness_goes_stale_when_the_supervisor_is_silent(tmp_path: Path) -> None:
    home = make_home(
        tmp_path, {"supervision.status_interval_s": "0.2", "supervision.status_stale_s": "2.0"}
    )
    with serving(home, log=tmp_path / "server.log") as server:
        assert wait_for(lambda: _readyz(home)[0] == 200), _readyz(home)
        os.kill(server.proc.pid, signal.SIGSTOP)  # a stuck parent: nobody restarts anything
        try:
            assert wait_for(lambda: _down(home)[:1] == ["supervisor"]), _readyz(home)
            assert home.get("/healthz").status_code == 200  # the worker itself is alive
        finally:
            os.kill(server.proc.pid, signal.SIGCONT)
        assert wait_for(lambda: _readyz(home)[0] == 200), _readyz(home)
