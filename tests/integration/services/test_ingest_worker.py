"""The ingest worker against a real store (SQLite and PostgreSQL): one device's bad messages are
dropped alone and counted, never end the worker, never fail other devices' messages, and a
redelivered message is stored once (issue 9 §1)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from support.ingestworker import telemetry, worker_kit
from trustfleet.services.ingest import DeviceMessage, parse_message, store_isolating

pytestmark = pytest.mark.integration

GOOD_A, GOOD_B, BAD = "dev-good0001", "dev-good0002", "dev-bad00001"


def _on(kind: str, body: bytes) -> tuple[str, bytes]:
    return f"tf/v1/d/{BAD}/{kind}", body


def _e22(now: datetime) -> bytes:
    metrics = ",".join(f'"m{i:03d}{"x" * 50}":1e22' for i in range(256))
    return f'{{"ts":"{now.isoformat()}","seq":1,"metrics":{{{metrics}}}}}'.encode()


def _poison(now: datetime) -> dict[str, tuple[tuple[str, bytes], str]]:
    """Messages that ended the worker or failed whole batches before issue 9, and their code."""
    ts = now.isoformat()
    return {
        # Finding 1: OverflowError in astimezone ended the worker (six of them: server down).
        "ts-year-1-telemetry": (
            _on("telemetry", b'{"ts":"0001-01-01T00:00:00+01:00","seq":1,"metrics":{}}'),
            "ingest.ts_range",
        ),
        "ts-year-1-ota-status": (
            _on("ota/status", b'{"ts":"0001-01-01T00:00:00+01:00","seq":1,"state":"failed"}'),
            "ingest.ts_range",
        ),
        "ts-year-9999-events": (
            _on("events", b'{"ts":"9999-12-31T23:59:59-01:00","seq":1,"type":"x"}'),
            "ingest.ts_range",
        ),
        # Finding 2: fit 16 KiB as sent, not as the store encodes it: the batch never stored.
        "metrics-1e22-x256": (_on("telemetry", _e22(now)), "ingest.too_large"),
        # Finding 3: UnicodeEncodeError from the store/driver escaped the worker's except.
        "surrogate-metric-name": (
            _on("telemetry", f'{{"ts":"{ts}","seq":1,"metrics":{{"\\ud800":1}}}}'.encode()),
            "ingest.not_json",
        ),
        "surrogate-ota-reason": (
            _on(
                "ota/status",
                f'{{"ts":"{ts}","seq":1,"state":"failed","reason":"\\udc00"}}'.encode(),
            ),
            "ingest.not_json",
        ),
        "surrogate-evidence-id": (
            _on("attest/evidence", b'{"id":"\\ud800","quote":"AA=="}'),
            "",  # whatever the store says: the point is the worker lives on
        ),
        "evidence-garbage": (
            _on("attest/evidence", b"\xff\x00{"),
            "attestation.evidence.unattributable",
        ),
        "int-metric-over-64-bits": (
            _on("telemetry", json.dumps({"ts": ts, "seq": 1, "metrics": {"n": 2**70}}).encode()),
            "ingest.range",
        ),
    }


POISON_IDS = list(_poison(datetime.now(UTC)))


@pytest.mark.parametrize("case", POISON_IDS)
def test_a_poison_message_is_dropped_alone_and_the_worker_lives_on(
    case: str, db_url: str, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    poison, code = _poison(now)[case]
    with worker_kit(tmp_path, db_url) as kit:
        for _round in range(6):  # six crashes took the whole server down before
            neighbours = [
                telemetry(d, 10 * _round + i, now=now) for d in (GOOD_A, GOOD_B) for i in range(10)
            ]
            kit.feed(*neighbours[:10], poison, *neighbours[10:])
        assert len(kit.rows(GOOD_A)) == len(kit.rows(GOOD_B)) == 60
        assert kit.rows(BAD) == []
        counters = kit.worker.counters
        assert counters.faults == 6 and counters.failed_batches == 0
        if code:
            assert counters.by_code == {code: 6}


def test_a_batch_the_store_refuses_is_split_until_the_culprit_is_alone(
    db_url: str, tmp_path: Path
) -> None:
    """Bisection, for whatever the verifier might miss: build the bad message by hand."""
    now = datetime.now(UTC)
    with worker_kit(tmp_path, db_url) as kit:
        good = [
            parse_message(*telemetry(GOOD_A if i % 2 else GOOD_B, i, now=now), now=now)
            for i in range(99)
        ]
        huge = {f"m{i:03d}{'x' * 50}": 1e22 for i in range(256)}  # over 16 KiB as stored
        bad = DeviceMessage(device_id=BAD, kind="telemetry", ts=now, seq=1, body={"metrics": huge})
        batch = [*good[:37], bad, *good[37:]]
        outcome, dropped = store_isolating(kit.uow, batch, now=now)
        assert outcome.telemetry_rows == outcome.accepted == 99
        assert [(d.device_id, d.index, d.code) for d in dropped] == [
            (BAD, 37, "store.details_too_large")
        ]
        assert len(kit.rows(GOOD_A)) + len(kit.rows(GOOD_B)) == 99


def test_rejections_become_one_event_per_device_per_window(db_url: str, tmp_path: Path) -> None:
    clock = [datetime.now(UTC)]
    with worker_kit(tmp_path, db_url, now=lambda: clock[0], rejected_event_window_s=300) as kit:
        start = clock[0]
        for i in range(50):
            late = (start - timedelta(days=30)).isoformat()
            body = json.dumps({"ts": late, "seq": i, "metrics": {}}).encode()
            kit.feed(
                _on("telemetry", body), _on("telemetry", b"nope"), telemetry(GOOD_A, i, now=start)
            )
            kit.worker._write_rejections(flush=False)  # what the worker's loop does each turn
        assert kit.events("ingest.rejected") == []
        clock[0] = start + timedelta(seconds=300)
        kit.worker._write_rejections(flush=False)
        (event,) = kit.events("ingest.rejected")
        assert event.subject == f"device:{BAD}"
        assert event.details["count"] == 100
        assert event.details["codes"] == {"ingest.ts_range": 50, "ingest.not_json": 50}
        assert len(kit.rows(GOOD_A)) == 50
        kit.worker._write_rejections(flush=True)
        assert len(kit.events("ingest.rejected")) == 1


def test_a_redelivered_message_is_stored_once(db_url: str, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    with worker_kit(tmp_path, db_url) as kit:
        first = telemetry(GOOD_A, 1, now=now, boot="boot-1")
        kit.feed(first, first, telemetry(GOOD_A, 2, now=now, boot="boot-1"))  # dup in a batch
        kit.feed(first)  # a QoS 1 redelivery in a later batch
        kit.feed(telemetry(GOOD_A, 1, now=now, boot="boot-2"))  # the next boot starts again
        rows = kit.rows(GOOD_A)
        assert sorted((r.boot, r.seq) for r in rows) == [
            ("boot-1", 1),
            ("boot-1", 2),
            ("boot-2", 1),
        ]
        assert kit.worker.counters.stored_rows == 3
        # An agent that sends no boot id is stored as before: no deduplication (docs/mqtt.md).
        legacy = telemetry(GOOD_B, 1, now=now, boot=None)
        kit.feed(legacy)
        kit.feed(legacy)
        assert [(r.boot, r.seq) for r in kit.rows(GOOD_B)] == [(None, 1), (None, 1)]
