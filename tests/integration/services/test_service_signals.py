"""Service-side signals in the store (issue 13 §1), on SQLite and PostgreSQL.

The security log is written by the real paths (an EST refusal through ``write_refusal``, a
missed challenge through ``sweep_missed``, a failed verdict's event as attestation writes it);
broker chunks are the plugin's format. Windows end on ``service_window_s`` boundaries, each is
built once per device (redelivery, a second call, the two writers), and a call's work is
bounded.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from trustfleet.monitoring import MetricsRecord
from trustfleet.services.attestation import sweep_missed
from trustfleet.services.refusals import Refusal, write_refusal
from trustfleet.services.service_signals import (
    CURSOR,
    collect_service_windows,
    ingest_broker_stats,
)
from trustfleet.settings import ServerSettings
from trustfleet.settings.monitoring import MonitoringSettings
from trustfleet.store import ChallengeRecord, UnitOfWork, create_engine, migrate

pytestmark = pytest.mark.integration

WINDOW_S = 60
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)  # a window boundary
DEV, OTHER, QUIET = "dev-sig00001", "dev-sig00002", "dev-sig00003"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class Context:
    settings: ServerSettings
    uow: UnitOfWork


@pytest.fixture
def rt(db_url: str) -> Iterator[Context]:
    engine = create_engine(db_url)
    migrate(engine)
    uow = UnitOfWork(engine)
    with uow.begin() as tx:
        for device_id, model in ((DEV, "gw"), (OTHER, "gw"), (QUIET, "sensor")):
            tx.devices.add(id=device_id, model=model, state="enrolled", now=T0)
    settings = ServerSettings(
        home=Path("/nonexistent"),
        ca={},
        monitoring=MonitoringSettings(service_window_s=WINDOW_S),
    )
    yield Context(settings=settings, uow=uow)
    engine.dispose()


def _est_refusal(rt: Context, device_id: str, at: datetime) -> None:
    details = {"mode": "reenroll", "code": "est.csr.key", "reason": "wrong key"}
    write_refusal(
        rt,  # type: ignore[arg-type]  # write_refusal only uses rt.uow
        Refusal(
            type="enrollment.refused",
            actor=f"device:{device_id}",
            subject=f"device:{device_id}",
            code="est.csr.key",
            at=at,
            details=details,
            source="127.0.0.1",
        ),
    )


def _missed_challenge(rt: Context, device_id: str, *, issued: datetime, due: datetime) -> None:
    record = ChallengeRecord(
        id=secrets.token_hex(16),
        device_id=device_id,
        nonce=secrets.token_bytes(32),
        pcrs=(0, 1),
        trigger="schedule",
        issued_at=issued,
        expires_at=due,
        used_at=None,
        outcome=None,
    )
    with rt.uow.begin() as tx:
        tx.attestation.add_challenge(record)
    sweep_missed(rt, now=due + timedelta(seconds=1))  # type: ignore[arg-type]  # settings, uow


def _failed_verdict_event(rt: Context, device_id: str, at: datetime) -> None:
    with rt.uow.begin() as tx:  # what attestation's policy appends for a failed verdict
        tx.events.append(
            type="attestation.failed",
            actor="system",
            subject=f"device:{device_id}",
            details={"challenge": "c1", "codes": ["attestation.pcr.mismatch", "eventlog.replay"]},
            now=at,
        )


def _service_windows(rt: Context) -> list[MetricsRecord]:
    with rt.uow.begin(read_only=True) as tx:
        return [r for _, r in tx.monitor_metrics.after(0) if r.source == "service"]


def _chunk(end: datetime, devices: dict[str, dict[str, object]], *, boot: str = "b00t") -> bytes:
    doc = {
        "v": 1, "boot": boot, "seq": 1, "part": 0, "end": int((end - EPOCH).total_seconds()),
        "interval_s": WINDOW_S, "untracked": 0, "unattributed": 0, "devices": devices,
    }  # fmt: skip
    return json.dumps(doc, separators=(",", ":")).encode()


def test_security_log_signals_land_in_the_device_s_window_once(rt: Context) -> None:
    end = T0 + timedelta(seconds=WINDOW_S)
    _est_refusal(rt, DEV, T0 + timedelta(seconds=5))
    _est_refusal(rt, DEV, T0 + timedelta(seconds=6))
    _failed_verdict_event(rt, DEV, T0 + timedelta(seconds=7))
    _missed_challenge(rt, OTHER, issued=T0 - timedelta(seconds=30), due=T0 + timedelta(seconds=8))
    _est_refusal(rt, DEV, end + timedelta(seconds=1))  # the next window's

    assert collect_service_windows(rt, now=end + timedelta(seconds=1)) == 0  # still in grace
    assert collect_service_windows(rt, now=end + timedelta(seconds=10), max_windows=1) == 2
    windows = {r.device_id: r for r in _service_windows(rt)}
    assert set(windows) == {DEV, OTHER}  # QUIET had nothing: no window
    mine = windows[DEV]
    assert (mine.end, mine.interval_s, mine.model) == (end, WINDOW_S, "gw")
    assert mine.numbers["svc-est-refusals"] == 2
    assert mine.numbers["svc-attestation-findings"] == 2
    assert mine.numbers["svc-missed-challenges"] == 0
    assert mine.numbers["svc-connect-attempts"] == 0
    assert windows[OTHER].numbers["svc-missed-challenges"] == 1
    assert mine.sets == {}  # the broker did not see it: no address set

    assert collect_service_windows(rt, now=end + timedelta(seconds=20)) == 0  # built once
    assert collect_service_windows(rt, now=end + timedelta(seconds=WINDOW_S + 10)) == 1
    with rt.uow.begin(read_only=True) as tx:
        built = tx.monitor_metrics.cursor(CURSOR)
    assert EPOCH + timedelta(seconds=built) == end + timedelta(seconds=WINDOW_S)


def test_broker_chunks_merge_with_the_security_log_and_are_stored_once(rt: Context) -> None:
    end = T0 + timedelta(seconds=WINDOW_S)
    _est_refusal(rt, DEV, T0 + timedelta(seconds=30))
    _est_refusal(rt, QUIET, T0 + timedelta(seconds=31))
    counters = {"c": 2, "r": 1, "d": 1, "z": 3, "m": 40, "b": 5120, "a": ["127.0.0.1", "::1"]}
    payload = _chunk(end, {DEV: counters, "dev-unknown9": counters})
    now = end + timedelta(seconds=1)

    assert ingest_broker_stats(rt, [payload, b"{not json", _chunk(end, {"X": {}})], now=now) == 1
    assert ingest_broker_stats(rt, [payload], now=now) == 0  # redelivered: nothing new
    assert collect_service_windows(rt, now=end + timedelta(seconds=10)) == 1  # QUIET only
    windows = {r.device_id: r for r in _service_windows(rt)}
    assert set(windows) == {DEV, QUIET}
    mine = windows[DEV]
    assert mine.numbers == {
        "svc-connect-attempts": 2, "svc-connect-refusals": 1, "svc-disconnects": 1,
        "svc-authz-failures": 3, "svc-messages-in": 40, "svc-bytes-in": 5120,
        "svc-est-refusals": 1, "svc-attestation-findings": 0, "svc-missed-challenges": 0,
    }  # fmt: skip
    assert mine.sets == {"svc-source-addresses": frozenset({"127.0.0.1", "::1"})}
    assert windows[QUIET].numbers["svc-est-refusals"] == 1


def test_two_broker_runs_in_one_batch_are_summed(rt: Context) -> None:
    end = T0 + timedelta(seconds=WINDOW_S)
    first = _chunk(end, {DEV: {"c": 1, "m": 2, "b": 10, "a": ["10.0.0.1"]}}, boot="run1")
    second = _chunk(end, {DEV: {"c": 1, "m": 3, "b": 20, "a": ["10.0.0.2"]}}, boot="run2")
    assert ingest_broker_stats(rt, [first, second], now=end) == 1
    (window,) = _service_windows(rt)
    assert window.numbers["svc-connect-attempts"] == 2
    assert window.numbers["svc-messages-in"] == 5
    assert window.numbers["svc-bytes-in"] == 30
    assert window.sets["svc-source-addresses"] == frozenset({"10.0.0.1", "10.0.0.2"})


def test_a_monitor_far_behind_builds_only_the_newest_windows(rt: Context) -> None:
    for hour in range(3):
        _est_refusal(rt, DEV, T0 + timedelta(hours=hour, seconds=1))
    now = T0 + timedelta(hours=2, seconds=WINDOW_S + 10)
    assert collect_service_windows(rt, now=now, max_windows=3) == 1  # the last hour's only
    (window,) = _service_windows(rt)
    assert window.end == T0 + timedelta(hours=2, seconds=WINDOW_S)
