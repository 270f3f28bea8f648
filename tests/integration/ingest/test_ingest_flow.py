"""Devices publish over the real broker; the ingest workers store what the contract allows.

Each device is a mosquitto client with an LDevID enrolled over EST; the server is
``trustfleet server run`` with its own Mosquitto and two ingest processes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
from ingestkit import (
    CLIENT_TIMEOUT_S,
    WAIT_S,
    Fleet,
    Identity,
    events,
    process_tree,
    start_server,
    stop_server,
    telemetry,
    wait_for,
)

from support.server import SoftwareDevice, enroll_software
from support.waiting import logged

pytestmark = pytest.mark.integration


def test_published_telemetry_becomes_a_row_and_sets_last_seen(fleet: Fleet) -> None:
    dev = fleet.new_device("tel")
    assert fleet.device(dev.device_id).last_seen_at is None
    result = fleet.pub(dev, "telemetry", [telemetry(1, temp_c=21.5, load=0.25)])
    assert result.returncode == 0, result.stderr
    (row,) = wait_for(lambda: fleet.rows(dev.device_id), what="the telemetry row")
    assert (row.seq, dict(row.metrics)) == (1, {"temp_c": 21.5, "load": 0.25})
    seen = fleet.device(dev.device_id).last_seen_at
    assert seen is not None and seen >= row.received_at
    shown = fleet.server.cli_json("device", "show", dev.device_id)
    assert shown["last_seen_at"] == seen.isoformat()


def test_two_ingest_workers_store_every_message_once(fleet: Fleet) -> None:
    devices = [fleet.new_device(f"load{i}") for i in range(3)]
    per_device = 40
    for dev in devices:
        result = fleet.pub(dev, "telemetry", [telemetry(i, n=i) for i in range(per_device)])
        assert result.returncode == 0, result.stderr

    def all_rows() -> dict[str, list[int]] | None:
        seqs = {d.device_id: [r.seq for r in fleet.rows(d.device_id)] for d in devices}
        return seqs if sum(map(len, seqs.values())) >= per_device * len(devices) else None

    seqs = wait_for(all_rows, what="every telemetry row")
    time.sleep(1.0)  # a duplicate would arrive about now; then count again
    for dev in devices:
        stored = sorted(r.seq for r in fleet.rows(dev.device_id))
        assert stored == list(range(per_device)), dev.device_id
    print(f"\n{sum(map(len, seqs.values()))} rows from {len(devices)} devices, no duplicate")


NOW_TS = datetime.now(UTC).isoformat()  # the service refuses a ts far from its clock
MALFORMED = {
    "not-json": "this is not json",
    "array": "[1, 2, 3]",
    "too-big": json.dumps({"ts": NOW_TS, "seq": 1, "pad": "x" * 17000}),
    "no-seq": json.dumps({"ts": NOW_TS, "metrics": {"a": 1}}),
    "metric-not-number": json.dumps({"ts": NOW_TS, "seq": 1, "metrics": {"a": "high"}}),
    "nan": '{"ts": NOW_TS, "seq": 1, "metrics": {"a": NaN}}',
}


def test_malformed_messages_are_dropped_and_the_workers_keep_going(fleet: Fleet) -> None:
    dev = fleet.new_device("bad")
    for name, payload in MALFORMED.items():
        result = fleet.pub(dev, "telemetry", [payload])
        assert result.returncode == 0, f"{name}: {result.stderr}"
    result = fleet.pub(dev, "telemetry", [telemetry(7, ok=1)])
    assert result.returncode == 0, result.stderr
    rows = wait_for(lambda: fleet.rows(dev.device_id), what="the good message")
    time.sleep(0.5)
    assert [r.seq for r in fleet.rows(dev.device_id)] == [7], rows
    # Workers survived: every ingest process is still the one that started.
    log = fleet.server.log.read_text()
    assert "restarting" not in log, log


def _e22_payload(seq: int) -> str:
    """Under 16 KiB as sent; over 16 KiB as the store encodes it ("1e22" -> "1e+22")."""
    metrics = ",".join(f'"m{i:03d}{"x" * 50}":1e22' for i in range(256))
    return f'{{"ts":"{datetime.now(UTC).isoformat()}","seq":{seq},"metrics":{{{metrics}}}}}'


def test_a_poisoning_device_never_stops_ingest_for_the_others(fleet: Fleet) -> None:
    """Regression (issue 9 §1, findings 1-2): six year-1 timestamps crashed the worker six
    times and ended ``server run``; 1e22 metrics failed whole batches, so another device's
    398 messages were never stored. Now each is dropped alone and summed in an event."""
    bad, other = fleet.new_device("poison"), fleet.new_device("other")
    overflow = '{"ts":"0001-01-01T00:00:00+01:00","seq":%d,"metrics":{"a":1}}'
    poison = [overflow % i for i in range(6)] + [_e22_payload(100 + i) for i in range(6)]
    assert all(len(p.encode()) <= 16 * 1024 for p in poison)
    per_other = 200
    with ThreadPoolExecutor(max_workers=2) as pool:  # both at once: they share batches
        sent_bad = pool.submit(fleet.pub, bad, "telemetry", poison)
        sent_other = pool.submit(
            fleet.pub, other, "telemetry", [telemetry(i, n=i) for i in range(per_other)]
        )
        assert sent_bad.result().returncode == 0 and sent_other.result().returncode == 0
    wait_for(
        lambda: len(fleet.rows(other.device_id)) >= per_other, what="every message of the other"
    )
    assert sorted(r.seq for r in fleet.rows(other.device_id)) == list(range(per_other))
    counted = wait_for(
        lambda: (n := sum(e.details["count"] for e in events(
            fleet, "ingest.rejected", f"device:{bad.device_id}"))) >= len(poison) and n,
        what="the ingest.rejected events",
    )  # fmt: skip
    assert counted == len(poison)
    assert fleet.rows(bad.device_id) == []
    assert fleet.server.process.poll() is None
    log = fleet.server.log.read_text()
    assert "restarting" not in log, log


def test_a_message_published_twice_is_stored_once(fleet: Fleet) -> None:
    """Finding 5: (device, boot, seq) names a message; a QoS 1 redelivery (here: the same
    payloads published again, over another connection) adds no row, whichever of the two
    ingest workers gets it. A new boot id starts its own sequence."""
    dev = fleet.new_device("dup")
    ts = datetime.now(UTC).isoformat()

    def payloads(boot: str) -> list[str]:
        return [
            json.dumps({"ts": ts, "seq": i, "boot": boot, "metrics": {"n": i}}) for i in range(20)
        ]

    for attempt in ([*payloads("boot-a")], [*payloads("boot-a")], [*payloads("boot-b")[:5]]):
        assert fleet.pub(dev, "telemetry", attempt).returncode == 0
    wait_for(lambda: len(fleet.rows(dev.device_id)) >= 25, what="the telemetry rows")
    time.sleep(1.0)  # a duplicate would arrive about now; then count again
    rows = sorted((r.boot, r.seq) for r in fleet.rows(dev.device_id))
    assert rows == [("boot-a", i) for i in range(20)] + [("boot-b", i) for i in range(5)]


def test_revocation_from_another_process_cuts_the_device_off(fleet: Fleet) -> None:
    victim, bystander = fleet.new_device("victim"), fleet.new_device("stays")
    client_id = victim.device_id  # a device's only client id (docs/mqtt.md)
    sub = fleet.sub(victim, client_id)
    try:
        _await_suback(sub)
        offset = fleet.broker_log.stat().st_size
        start = time.monotonic()
        revoke = fleet.server.cli("device", "revoke", victim.device_id, "--reason", "keyCompromise")
        assert revoke.returncode == 0, revoke.stderr
        revoked_at = time.monotonic()
        gone = (f"Client {client_id} disconnected", f"Client {client_id} been disconnected")
        wait_for(lambda: _log_has(fleet, offset, gone), what="the broker to drop the device")
        ended = time.monotonic()
    finally:
        sub.kill()
        sub.communicate(timeout=CLIENT_TIMEOUT_S)
    print(
        f"\nrevoke CLI ran {revoked_at - start:.2f}s (process start, token login, store); "
        f"broker logged the disconnect within {ended - revoked_at:.2f}s of its return "
        f"({ended - start:.2f}s after it started; poll bound {WAIT_S}s)"
    )
    # A reconnect fails the TLS handshake (the CRL now lists the LDevID); nothing is stored.
    again = fleet.pub(victim, "telemetry", [telemetry(99, after=1)])
    assert again.returncode != 0
    ok = fleet.pub(bystander, "telemetry", [telemetry(1, alive=1)])
    assert ok.returncode == 0, ok.stderr
    wait_for(lambda: fleet.rows(bystander.device_id), what="the bystander's row")
    assert fleet.rows(victim.device_id) == []


def test_a_session_with_a_superseded_ldevid_is_cut(fleet: Fleet) -> None:
    """Regression (adversarial re-test of issue 9): a renewal superseded an LDevID, but a live
    session opened with it (a stolen copy) stayed connected. Now the watcher kicks the device
    once the CRL listing the old certificate is loaded; the old certificate cannot come back
    and the new one connects."""
    thief = fleet.new_device("stolen")
    sub = fleet.sub(thief, thief.device_id)
    try:
        _await_suback(sub)
        offset = fleet.broker_log.stat().st_size
        device = SoftwareDevice(device_id=thief.device_id, key=thief.key, idevid=thief.cert)
        new_cert, new_key = enroll_software(  # the owner renews with the same certificate
            fleet.server, device, fleet.work, operation="simplereenroll",
            cert=thief.cert, key=thief.key,
        )  # fmt: skip
        gone = (f"Client {thief.device_id} disconnected", f"Client {thief.device_id} been disc")
        wait_for(lambda: _log_has(fleet, offset, gone), what="the superseded session to end")
    finally:
        sub.kill()
        sub.communicate(timeout=CLIENT_TIMEOUT_S)
    wait_for(
        lambda: fleet.pub(thief, "telemetry", [telemetry(1, old=1)]).returncode != 0 or None,
        what="the superseded certificate to be refused",
    )
    owner = Identity(thief.device_id, new_cert, new_key)
    assert fleet.pub(owner, "telemetry", [telemetry(2, new=1)]).returncode == 0


def test_sigterm_stops_broker_ingest_and_workers(tmp_path_factory: pytest.TempPathFactory) -> None:
    server, _port = start_server(tmp_path_factory.mktemp("stop"), ingest_workers=2)
    try:
        pids = process_tree(server.process.pid)
        names = {pid: _name(pid) for pid in pids}
        assert "mosquitto" in names.values(), names
        # parent + 1 HTTPS worker + 2 ingest workers (+ multiprocessing's resource tracker)
        assert len([n for n in names.values() if n != "mosquitto"]) >= 4, names
        os.kill(server.process.pid, signal.SIGTERM)
        start = time.monotonic()
        code = server.process.wait(timeout=60)
        print(f"\nserver run exited {code} {time.monotonic() - start:.2f}s after SIGTERM")
        left = wait_for(
            lambda: [p for p in pids if _alive(p)] == [] or None, timeout_s=15, what="no process"
        )
        assert left
        assert code == 0
    finally:
        stop_server(server)


def _name(pid: int) -> str:
    try:
        return open(f"/proc/{pid}/comm").read().strip()
    except OSError:
        return "?"


def _alive(pid: int) -> bool:
    try:
        state = open(f"/proc/{pid}/stat").read().split()[2]  # noqa: SIM115
    except OSError:
        return False
    return state != "Z"


def _await_suback(sub: subprocess.Popen[str]) -> None:
    """Read mosquitto_sub's debug output until its subscription is granted."""
    assert sub.stdout is not None
    for line in sub.stdout:
        if "received SUBACK" in line:
            return
    pytest.fail("mosquitto_sub never subscribed")


def _log_has(fleet: Fleet, offset: int, needles: tuple[str, ...]) -> bool:
    return logged(fleet.broker_log, *needles, after=offset)


_SEND = (
    "import json, sys; from pathlib import Path;"
    "from trustfleet.services.mqtt_client import send_command;"
    "from trustfleet.settings import load_server_settings;"
    "a = json.loads(sys.argv[1]);"
    "print(send_command(load_server_settings(Path(a['home'])), a['dev'], 'ping', {}))"
)


def test_send_command_reaches_the_device(fleet: Fleet) -> None:
    dev = fleet.new_device("cmd")
    sub = fleet.sub(dev, f"{dev.device_id}-cmd")
    try:
        assert sub.stdout is not None
        for line in sub.stdout:
            if "received SUBACK" in line:
                break
        args = json.dumps({"home": str(fleet.server.home), "dev": dev.device_id})
        # Its own process: awscrt loads the service token there (no python-pkcs11 login).
        sent = subprocess.run(
            [sys.executable, "-c", _SEND, args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert sent.returncode == 0, sent.stderr
        command_id = sent.stdout.strip()
        for line in sub.stdout:
            if command_id in line:
                assert json.loads(line)["name"] == "ping"
                break
    finally:
        sub.kill()
        sub.communicate(timeout=CLIENT_TIMEOUT_S)
