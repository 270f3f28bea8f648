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

import pytest
from ingestkit import (
    CLIENT_TIMEOUT_S,
    WAIT_S,
    Fleet,
    process_tree,
    start_server,
    stop_server,
    telemetry,
    wait_for,
)

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


MALFORMED = {
    "not-json": "this is not json",
    "array": "[1, 2, 3]",
    "too-big": json.dumps({"ts": "2026-01-01T00:00:00+00:00", "seq": 1, "pad": "x" * 17000}),
    "no-seq": json.dumps({"ts": "2026-01-01T00:00:00+00:00", "metrics": {"a": 1}}),
    "metric-not-number": json.dumps(
        {"ts": "2026-01-01T00:00:00+00:00", "seq": 1, "metrics": {"a": "high"}}
    ),
    "nan": '{"ts": "2026-01-01T00:00:00+00:00", "seq": 1, "metrics": {"a": NaN}}',
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
    assert "restarting" not in fleet.server.log.read_text()


def test_revocation_from_another_process_cuts_the_device_off(fleet: Fleet) -> None:
    victim, bystander = fleet.new_device("victim"), fleet.new_device("stays")
    client_id = victim.device_id  # a device's only client id (docs/mqtt.md)
    sub = fleet.sub(victim, client_id)
    try:
        assert sub.stdout is not None
        for line in sub.stdout:
            if "received SUBACK" in line:
                break
        else:
            pytest.fail("mosquitto_sub never subscribed")
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


def _log_has(fleet: Fleet, offset: int, needles: tuple[str, ...]) -> bool:
    with fleet.broker_log.open("rb") as log:
        log.seek(offset)
        text = log.read().decode(errors="replace")
    return any(n in text for n in needles)


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
