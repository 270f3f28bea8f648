"""The cost of service-side signals (issue 13 §1) on the service's side of the broker.

Builds one window's broker statistics for ``--devices`` devices in the guard plugin's chunk
format (one source address each, packed greedily into ``MAX_BROKER_STATS_BYTES`` chunks as the
plugin does), and ``--events`` security events (EST refusals) of the same window, on a real
store (SQLite in a temporary directory, or ``--db-url``). Prints:

* bytes per device entry and chunks per window (what the broker publishes);
* ``decode_broker_stats``: device entries decoded per second;
* ``ingest_broker_stats``: service windows stored per second (one transaction per window,
  merged with the security log's signals of that window);
* ``collect_service_windows``: one call that builds the window of the devices only the
  security log names.

Usage: ``python benchmarks/service_signals.py [--devices 10000] [--events 1000] [--json]``
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from trustfleet.monitoring.service_window import decode_broker_stats
from trustfleet.services.refusals import Refusal, write_refusal
from trustfleet.services.service_signals import collect_service_windows, ingest_broker_stats
from trustfleet.settings import ServerSettings
from trustfleet.settings.monitoring import MonitoringSettings
from trustfleet.store import UnitOfWork, create_engine, migrate
from trustfleet.wire import DEVICE_ID_PATTERN, MAX_BROKER_STATS_BYTES

WINDOW_S = 60
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
END = T0 + timedelta(seconds=WINDOW_S)


@dataclass
class _Context:
    settings: ServerSettings
    uow: UnitOfWork


def _entry(device_id: str, i: int) -> str:
    return (
        f'"{device_id}":{{"c":1,"r":0,"d":1,"z":{i % 3},"m":{60 + i % 7},"b":{3840 + i},'
        f'"a":["10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}"]}}'
    )


def chunks(device_ids: list[str]) -> list[bytes]:
    """One window's chunks, packed like the plugin: as many entries as fit the bound."""
    out: list[bytes] = []
    part, body = 0, []

    def head() -> str:
        return (
            f'{{"v":1,"boot":"0123456789abcdef","seq":{part + 1},"part":{part},'
            f'"end":{int(END.timestamp())},"interval_s":{WINDOW_S},"untracked":0,'
            f'"unattributed":0,"devices":{{'
        )

    for i, device_id in enumerate(device_ids):
        entry = _entry(device_id, i)
        if len(head()) + len(",".join([*body, entry])) + 2 > MAX_BROKER_STATS_BYTES:
            out.append((head() + ",".join(body) + "}}").encode())
            part, body = part + 1, []
        body.append(entry)
    out.append((head() + ",".join(body) + "}}").encode())
    return out


def _store(url: str, devices: list[str], *, events: int) -> _Context:
    engine = create_engine(url)
    migrate(engine)
    uow = UnitOfWork(engine)
    with uow.begin() as tx:
        for device_id in devices:
            tx.devices.add(id=device_id, model="bench", state="enrolled", now=T0)
    rt = _Context(
        settings=ServerSettings(
            home=Path("/nonexistent"),
            ca={},
            monitoring=MonitoringSettings(service_window_s=WINDOW_S),
        ),
        uow=uow,
    )
    for i in range(events):  # half of them name devices the broker never saw
        device_id = devices[i * 2 % len(devices)] if i % 2 else f"dev-offline{i:05d}"
        if i % 2 == 0:
            with uow.begin() as tx:
                tx.devices.add(id=device_id, model="bench", state="enrolled", now=T0)
        refusal = Refusal(
            type="enrollment.refused",
            actor=f"device:{device_id}",
            subject=f"device:{device_id}",
            code="est.csr.key",
            at=T0 + timedelta(seconds=i % WINDOW_S),
            details={"mode": "reenroll", "code": "est.csr.key", "reason": "bench"},
        )
        write_refusal(rt, refusal)  # type: ignore[arg-type]  # uses rt.uow only
    return rt


def run(*, devices: int, events: int, db_url: str | None) -> dict[str, float]:
    ids = [f"dev-bench{i:06d}" for i in range(devices)]
    payloads = chunks(ids)
    figures: dict[str, float] = {
        "devices": devices,
        "events": events,
        "chunks_per_window": len(payloads),
        "bytes_per_device": round(sum(map(len, payloads)) / devices, 1),
    }
    start = time.perf_counter()
    for payload in payloads:
        decode_broker_stats(
            payload, max_bytes=MAX_BROKER_STATS_BYTES, device_id_pattern=DEVICE_ID_PATTERN
        )
    figures["decode_devices_per_s"] = round(devices / (time.perf_counter() - start))
    with tempfile.TemporaryDirectory() as tmp:
        rt = _store(db_url or f"sqlite:///{tmp}/bench.db", ids, events=events)
        start = time.perf_counter()
        stored = ingest_broker_stats(rt, payloads, now=END)  # type: ignore[arg-type]
        elapsed = time.perf_counter() - start
        figures["ingest_windows_stored"] = stored
        figures["ingest_windows_per_s"] = round(stored / elapsed)
        start = time.perf_counter()
        built = collect_service_windows(rt, now=END + timedelta(seconds=10), max_windows=1)  # type: ignore[arg-type]
        figures["collect_windows_built"] = built
        figures["collect_call_ms"] = round((time.perf_counter() - start) * 1000, 1)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=1_000)
    parser.add_argument("--db-url", default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    figures = run(devices=args.devices, events=args.events, db_url=args.db_url)
    if args.json:
        print(json.dumps(figures))
        return
    for name, value in figures.items():
        print(f"{name:>24}: {value}")


if __name__ == "__main__":
    main()
