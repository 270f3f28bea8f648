"""The cost of ingest's per-message checks, bisection and at-most-once inserts (issue 9 §1).

Runs the real :class:`~trustfleet.server.ingest_worker.IngestWorker` processing on a real store
(SQLite in a temporary directory, or ``--db-url``), without a broker, and prints:

* ``parse_message`` per message: a 4-metric telemetry message, and a 16 KiB one of 256
  metrics (the worst case of the re-encoding check);
* worker throughput for batches of 100 valid telemetry messages (with ``boot``: every insert
  goes through the unique (device, boot, seq) index), the same with half of each batch
  poison (year-1 ``ts``), and the same batch redelivered (every row a duplicate);
* ``store_isolating`` on 100 messages with one the store refuses (bisection) against none.

Usage: ``python benchmarks/ingest_path.py [--batches 50] [--db-url URL]``
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from trustfleet.server.ingest_worker import IngestWorker
from trustfleet.services.ingest import DeviceMessage, parse_message, store_isolating
from trustfleet.settings import CA_NAMES, CaSettings, ServerSettings, StoreSettings
from trustfleet.store import UnitOfWork, create_engine, migrate

DEVICES = ("dev-bench0001", "dev-bench0002")
POISON = b'{"ts":"0001-01-01T00:00:00+01:00","seq":1,"metrics":{}}'


def _telemetry(
    device_id: str, seq: int, *, now: datetime, boot: str = "bench"
) -> tuple[str, bytes]:
    body = {
        "ts": now.isoformat(),
        "seq": seq,
        "boot": boot,
        "metrics": {"cpu": 1.5, "mem": 2, "t": 3.25, "n": seq},
    }
    return f"tf/v1/d/{device_id}/telemetry", json.dumps(body).encode()


def _per_call_us(call: Callable[[], object], *, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        call()
    return (time.perf_counter() - start) / n * 1e6


def _worker(home: Path, url: str) -> tuple[IngestWorker, UnitOfWork]:
    engine = create_engine(url)
    migrate(engine)
    uow = UnitOfWork(engine)
    now = datetime.now(UTC)
    with uow.begin() as tx:
        for device_id in DEVICES:
            tx.devices.add(id=device_id, model="m", state="enrolled", now=now)
    ca = {name: CaSettings(key="pkcs11:token=none", cert="none.pem") for name in CA_NAMES}
    settings = ServerSettings(home=home, ca=ca, store=StoreSettings(url=url))
    return IngestWorker(settings, uow=uow), uow


def _rate(worker: IngestWorker, batches: list[list[tuple[str, bytes]]]) -> float:
    start = time.perf_counter()
    for batch in batches:
        worker.process([(topic, payload, None) for topic, payload in batch])
    return sum(map(len, batches)) / (time.perf_counter() - start)


def _parse_figures(now: datetime) -> None:
    topic = f"tf/v1/d/{DEVICES[0]}/telemetry"
    small = _telemetry(DEVICES[0], 1, now=now)[1]
    metrics = {f"m{i:03d}{'x' * 40}": 1.25 for i in range(256)}
    big = json.dumps({"ts": now.isoformat(), "seq": 1, "metrics": metrics}).encode()
    for label, payload, n in (("4 metrics", small, 20_000), ("256 metrics", big, 2_000)):
        us = _per_call_us(lambda p=payload: parse_message(topic, p, now=now), n=n)
        print(f"parse_message, {label} ({len(payload)} B): {us:.1f} us")


def _worker_figures(worker: IngestWorker, *, batches: int, now: datetime) -> None:
    seq = iter(range(10**9))
    good = [
        [_telemetry(DEVICES[i % 2], next(seq), now=now) for i in range(100)] for _ in range(batches)
    ]
    print(f"worker, 100 valid per batch: {_rate(worker, good):,.0f} messages/s")
    print(f"worker, the same redelivered (all duplicates): {_rate(worker, good):,.0f} messages/s")
    poison = (f"tf/v1/d/{DEVICES[1]}/telemetry", POISON)
    mixed = [
        [_telemetry(DEVICES[0], next(seq), now=now) if i % 2 else poison for i in range(100)]
        for _ in range(batches)
    ]
    print(f"worker, 50 valid + 50 poison per batch: {_rate(worker, mixed):,.0f} messages/s")
    c = worker.counters
    print(
        f"  counters: {c.received} received, {c.stored_rows} rows, {c.faults} dropped, "
        f"{c.failed_batches} failed batches"
    )


def _bisect_figures(uow: UnitOfWork, *, now: datetime) -> None:
    huge = {f"m{i:03d}{'x' * 50}": 1e22 for i in range(256)}
    bad = DeviceMessage(
        device_id=DEVICES[1], kind="telemetry", ts=now, seq=0, body={"metrics": huge}
    )
    for n, (label, with_bad) in enumerate((("no bad message", False), ("one refused", True))):
        msgs = [
            parse_message(*_telemetry(DEVICES[0], i, now=now, boot=f"b{n}"), now=now)
            for i in range(99)
        ]
        batch = [*msgs[:50], bad, *msgs[50:]] if with_bad else msgs
        start = time.perf_counter()
        outcome, dropped = store_isolating(uow, batch, now=now)
        ms = (time.perf_counter() - start) * 1000
        print(
            f"store_isolating, 99 valid + {label}: {ms:.1f} ms, "
            f"{outcome.telemetry_rows} rows, {len(dropped)} dropped"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--batches", type=int, default=50)
    parser.add_argument("--db-url", default="")
    args = parser.parse_args()
    now = datetime.now(UTC)
    _parse_figures(now)
    with tempfile.TemporaryDirectory() as tmp:
        worker, uow = _worker(Path(tmp), args.db_url or f"sqlite:///{tmp}/bench.db")
        _worker_figures(worker, batches=args.batches, now=now)
        _bisect_figures(uow, now=now)


if __name__ == "__main__":
    main()
