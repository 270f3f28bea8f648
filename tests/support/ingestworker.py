"""An :class:`~trustfleet.server.ingest_worker.IngestWorker` on a real store, without a broker.

The worker's processing (parse, the per-message boundary, batches, bisection, evidence,
``ingest.rejected`` events) runs exactly as in ``server run``; only the MQTT client is absent
(acknowledgements have no handle). Used by the worker tests and the property tests.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from trustfleet.server.ingest_worker import IngestWorker
from trustfleet.settings import CA_NAMES, CaSettings, IngestSettings, ServerSettings, StoreSettings
from trustfleet.store import UnitOfWork, create_engine, migrate

ENROLLED = ("dev-good0001", "dev-good0002", "dev-bad00001")


@dataclass
class WorkerKit:
    """A worker, its store, and helpers to feed it and read what it stored."""

    worker: IngestWorker
    uow: UnitOfWork

    def feed(self, *items: tuple[str, bytes]) -> None:
        """One batch through the worker (QoS 0: no acknowledgement handles)."""
        self.worker.process([(topic, payload, None) for topic, payload in items])

    def rows(self, device_id: str) -> list[Any]:
        with self.uow.begin(read_only=True) as tx:
            return tx.telemetry.list_for_device(device_id, limit=1000)

    def events(self, type_: str) -> list[Any]:
        with self.uow.begin(read_only=True) as tx:
            return [e for e in tx.events.list(limit=1000) if e.type == type_]


def home_settings(home: Path, db_url: str, **ingest: Any) -> ServerSettings:
    """Settings of a home that holds nothing but the store (no tokens, no broker)."""
    ca = {name: CaSettings(key="pkcs11:token=none", cert="none.pem") for name in CA_NAMES}
    return ServerSettings(
        home=home, ca=ca, store=StoreSettings(url=db_url), ingest=IngestSettings(**ingest)
    )


@contextmanager
def worker_kit(
    home: Path,
    db_url: str,
    *,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    **ingest: Any,
) -> Iterator[WorkerKit]:
    """A migrated store with three enrolled devices, and a worker on it."""
    engine = create_engine(db_url)
    migrate(engine)
    uow = UnitOfWork(engine)
    with uow.begin() as tx:
        for device_id in ENROLLED:
            tx.devices.add(id=device_id, model="m", state="enrolled", now=now())
    worker = IngestWorker(home_settings(home, db_url, **ingest), uow=uow, now=now)
    try:
        yield WorkerKit(worker, uow)
    finally:
        engine.dispose()


def telemetry(
    device_id: str, seq: int, *, now: datetime, boot: str | None = "b00t", **extra: Any
) -> tuple[str, bytes]:
    """A valid telemetry message of ``device_id`` (with ``boot`` unless None)."""
    body: dict[str, Any] = {"ts": now.isoformat(), "seq": seq, "metrics": {"n": seq}, **extra}
    if boot is not None:
        body["boot"] = boot
    return f"tf/v1/d/{device_id}/telemetry", json.dumps(body).encode()
