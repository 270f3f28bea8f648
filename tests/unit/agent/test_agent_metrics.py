"""The agent's metrics collectors: a fake /proc tree written here, and this machine's /proc."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from trustfleet import wire
from trustfleet.agent.metrics import (
    MetricsReporter,
    ProcCollector,
    ProcLimits,
    ScenarioCollector,
    bounded_record,
)
from trustfleet.agent.platform.faults import Faults, MetricsScenario
from trustfleet.errors import Config
from trustfleet.monitoring import DEVICE_NUMBERS, DEVICE_SETS, MetricsRecord
from trustfleet.monitoring.report import decode_report

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DEVICE = "dev-00000001"

_NET_DEV = """Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop
    lo: {lo} 10 0 0 0 0 0 0 {lo} 10 0 0 0 0 0 0
  eth0: {rx} {rxp} 0 0 0 0 0 0 {tx} {txp} 0 0 0 0 0 0
"""
_TCP = """  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  inode
   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1
   1: 0100007F:22B3 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1
   2: 0F02000A:9C40 0A0200C0:20FB 01 00000000:00000000 00:00000000 00000000     0        0 3 1
   3: 0F02000A:9C41 0B0200C0:01BB 06 00000000:00000000 00:00000000 00000000     0        0 4 1
   4: garbage
"""
_TCP6 = """  sl  local_address                         remote_address                        st
   0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 0
   1: B80D0120000000000000000001000000:C000 B80D0120000000000000000002000000:01BB 01 0
"""
_UDP = """  sl  local_address rem_address   st
   0: 00000000:007B 00000000:0000 07 0
   1: 0F02000A:D431 0A0200C0:0035 01 0
"""
_STAT = "cpu  {busy} 0 0 {idle} 0 0 0 0 0 0\ncpu0 1 0 0 1 0 0 0 0 0 0\n"
_MEMINFO = "MemTotal:       1000000 kB\nMemFree:         100000 kB\nMemAvailable:    250000 kB\n"


def _proc(root: Path, *, rx: int, tx: int, busy: int, idle: int, exes: dict[str, Path]) -> None:
    (root / "net").mkdir(parents=True, exist_ok=True)
    net_dev = _NET_DEV.format(lo=999_999, rx=rx, rxp=rx // 100, tx=tx, txp=tx // 100)
    (root / "net" / "dev").write_text(net_dev)
    (root / "net" / "tcp").write_text(_TCP)
    (root / "net" / "tcp6").write_text(_TCP6)
    (root / "net" / "udp").write_text(_UDP)
    (root / "net" / "udp6").write_text("  sl  local_address rem_address st\n")
    (root / "stat").write_text(_STAT.format(busy=busy, idle=idle))
    (root / "meminfo").write_text(_MEMINFO)
    for pid, exe in exes.items():
        (root / pid).mkdir(exist_ok=True)
        link = root / pid / "exe"
        if not link.is_symlink():
            link.symlink_to(exe)
    (root / "self").mkdir(exist_ok=True)  # not a pid


@pytest.fixture
def fake(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    bins = tmp_path / "bin"
    bins.mkdir()
    exes = {}
    for name in ("init", "sshd"):
        (bins / name).write_bytes(f"#!{name}".encode())
        exes[name] = hashlib.sha256(f"#!{name}".encode()).hexdigest()
    root = tmp_path / "proc"
    _proc(root, rx=1000, tx=500, busy=100, idle=900,
          exes={"1": bins / "init", "42": bins / "sshd", "43": bins / "sshd"})  # fmt: skip
    return root, exes


def test_proc_collector_reads_a_fake_tree(
    fake: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    root, exes = fake
    watched = tmp_path / "passwd"
    watched.write_text("root:x:0:0\n")
    auth = tmp_path / "auth.log"
    auth.write_text("old: Failed password for root\n")
    collector = ProcCollector(device_id=DEVICE, model="gw", root=root, watched_files=[watched],
                              auth_log=auth)  # fmt: skip
    _proc(root, rx=6000, tx=2500, busy=400, idle=1600, exes={})
    with auth.open("a") as log:
        log.write("sshd: Failed password for admin\nsshd: Accepted key\nsshd: Invalid user x\nhalf")
    record = collector.collect(NOW, 300)
    n, s = record.numbers, record.sets
    assert (n["all-bytes-in"], n["all-bytes-out"]) == (5000, 2000)  # lo excluded, deltas
    assert (n["all-packets-in"], n["all-packets-out"]) == (50, 20)
    assert s["listening-tcp-ports"] == {"22", "8883", "8080"}
    assert s["listening-udp-ports"] == {"123"}
    assert n["num-established-tcp-connections"] == 2  # TIME_WAIT (06) is not
    assert s["remote-endpoints"] == {"192.0.2.10:8443", "[2001:db8::2]:443"}
    assert s["destination-ip-addresses"] == {"192.0.2.10", "2001:db8::2"}
    assert n["num-processes"] == 3
    assert s["executables"] == set(exes.values())
    assert n["cpu-percent"] == pytest.approx(30.0)  # 300 busy of 1000 jiffies
    assert n["memory-percent"] == pytest.approx(75.0)
    assert n["failed-logins"] == 2  # new complete lines only; "half" waits
    digest = hashlib.sha256(b"root:x:0:0\n").hexdigest()
    assert s["watched-files"] == {f"{watched}={digest}"}
    assert set(n) <= set(DEVICE_NUMBERS) and set(s) <= set(DEVICE_SETS)
    # The next window: no new login failures; a rotated (smaller) log is read from its start.
    assert collector.collect(NOW + timedelta(seconds=300), 300).numbers["failed-logins"] == 0
    auth.write_text("Failed password\n")
    assert collector.collect(NOW + timedelta(seconds=600), 300).numbers["failed-logins"] == 1


def test_executables_are_bounded_and_cached(fake: tuple[Path, dict[str, str]]) -> None:
    root, _exes = fake
    collector = ProcCollector(device_id=DEVICE, model="gw", root=root,
                              limits=ProcLimits(max_executables=1))  # fmt: skip
    assert len(collector.collect(NOW, 60).sets["executables"]) == 1
    assert len(collector._exe_cache) == 1
    collector.collect(NOW, 60)
    assert len(collector._exe_cache) == 1  # same inode and mtime: not hashed again


def test_a_missing_proc_tree_gives_an_empty_window(tmp_path: Path) -> None:
    record = ProcCollector(device_id=DEVICE, model="gw", root=tmp_path / "none").collect(NOW, 60)
    assert record.numbers["num-processes"] == 0 and record.sets["executables"] == frozenset()


@pytest.mark.skipif(not Path("/proc/net/dev").is_file(), reason="needs Linux /proc")
def test_proc_collector_reads_this_machine() -> None:
    collector = ProcCollector(device_id=DEVICE, model="gw", watched_files=[Path("/etc/hostname")])
    record = collector.collect(NOW, 60)
    assert record.numbers["num-processes"] >= 1
    assert 0 <= record.numbers["memory-percent"] <= 100
    assert record.sets["executables"]  # at least this Python
    payload = MetricsReporter(collector, interval_s=60, start=NOW, start_mono=0).encode(record)
    assert payload is not None
    decoded = decode_report(
        payload, device_id=DEVICE, model="gw", now=NOW, max_bytes=wire.MAX_METRICS_REPORT_BYTES,
        max_set_members=wire.MAX_SET_MEMBERS, max_past_s=60, max_future_s=60,
    )  # fmt: skip
    assert decoded.numbers == record.numbers


def test_reports_are_cut_to_the_wire_bounds() -> None:
    hashes = frozenset(f"{i:064x}" for i in range(1000))
    big = MetricsRecord(DEVICE, "gw", "device", NOW, 60, sets={"executables": hashes})
    assert len(bounded_record(big, max_members=10, max_chars=64).sets["executables"]) == 10
    reporter = MetricsReporter(
        _Fixed(big), interval_s=60, start=NOW, start_mono=0.0, max_bytes=4096
    )
    payload = reporter.encode(big)
    assert payload is not None and len(payload) <= 4096
    assert len(json.loads(payload)["custom_metrics"]["executables"][0]["string_list"]) > 0


class _Fixed:
    def __init__(self, record: MetricsRecord) -> None:
        self.record = record
        self.ends: list[datetime] = []

    def collect(self, end: datetime, interval_s: int) -> MetricsRecord:
        self.ends.append(end)
        return self.record


def test_the_reporter_reports_each_window_once_and_skips_missed_ones() -> None:
    collector = _Fixed(MetricsRecord(DEVICE, "gw", "device", NOW, 60))
    reporter = MetricsReporter(collector, interval_s=60, start=NOW, start_mono=100.0)
    assert reporter.due(150.0) is None and reporter.next_due() == 160.0
    assert reporter.due(160.0) is not None
    assert reporter.due(170.0) is None
    assert reporter.due(400.0) is not None  # late: one report, of the current window
    assert collector.ends == [NOW + timedelta(seconds=60), NOW + timedelta(seconds=300)]


def test_scenario_collector_follows_a_built_in_scenario() -> None:
    collector = ScenarioCollector.from_scenario(
        "normal", device_id=DEVICE, model="sim-v1", profile="gw-x1", device_index=0, devices=2,
        seed=1, start=NOW,
    )  # fmt: skip
    record = collector.collect(NOW + timedelta(seconds=1), 1)
    assert record.device_id == DEVICE and record.model == "sim-v1"
    assert "destination-ip-addresses" in record.sets and record.numbers["num-processes"] > 0
    payload = MetricsReporter(collector, interval_s=1, start=NOW, start_mono=0).encode(record)
    assert payload is not None


def test_a_bad_scenario_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(Config) as caught:
        ScenarioCollector.from_scenario("no-such-scenario", device_id=DEVICE, model="m", profile="",
                                        device_index=0, devices=1, seed=0, start=NOW)  # fmt: skip
    assert caught.value.code == "agent.scenario"


def test_without_the_server_distribution_a_scenario_is_one_config_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # trustfleet-agent does not ship trustfleet.monitoring.scenario (ADR 0020).
    monkeypatch.setitem(sys.modules, "trustfleet.monitoring.scenario", None)
    with pytest.raises(Config) as caught:
        ScenarioCollector.from_scenario("normal", device_id=DEVICE, model="m", profile="",
                                        device_index=0, devices=1, seed=0, start=NOW)  # fmt: skip
    assert caught.value.code == "agent.scenario"
    assert "not installed" in caught.value.one_line()
    assert "\n" not in caught.value.one_line()


@pytest.mark.parametrize(
    "data", [b"\xff\xfe not text", b"#" * (2 << 20)], ids=["not-utf8", "too-large"]
)
def test_a_scenario_file_is_read_bounded_as_text(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "big.toml"
    path.write_bytes(data)
    with pytest.raises(Config) as caught:
        ScenarioCollector.from_scenario(str(path), device_id=DEVICE, model="m", profile="",
                                        device_index=0, devices=1, seed=0, start=NOW)  # fmt: skip
    assert caught.value.code == "agent.scenario"


@pytest.mark.parametrize(
    "doc",
    [
        {"source": 3},
        {"device_index": 1},
        {"source": "normal", "extra": 1},
        {"source": "x", "seed": "1"},
        [],
    ],
    ids=["source-not-text", "no-source", "unknown-key", "seed-text", "not-object"],
)
def test_faults_json_metrics_scenario_is_checked(tmp_path: Path, doc: object) -> None:
    (tmp_path / "faults.json").write_text(json.dumps({"metrics_scenario": doc}))
    with pytest.raises(Config):
        Faults.for_simulation(tmp_path)


def test_faults_json_names_a_scenario_file_in_the_device_folder(tmp_path: Path) -> None:
    doc = {"source": "mine.toml", "device_index": 2, "devices": 5, "seed": 7, "profile": "gw-x1"}
    (tmp_path / "faults.json").write_text(json.dumps({"metrics_scenario": doc}))
    got = Faults.for_simulation(tmp_path).metrics_scenario
    assert got == MetricsScenario(source=str(tmp_path / "mine.toml"), device_index=2, devices=5,
                                  seed=7, profile="gw-x1")  # fmt: skip
    assert os.path.isabs(got.source)


def test_a_metrics_scenario_written_by_the_harness_reads_back(tmp_path: Path) -> None:
    chosen = MetricsScenario(source="normal", device_index=1, devices=3, seed=4, profile="gw-x1")
    (tmp_path / "faults.json").write_text(json.dumps({"metrics_scenario": chosen.to_json()}))
    assert Faults.for_simulation(tmp_path).metrics_scenario == chosen
