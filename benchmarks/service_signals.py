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
  security log names;
* the guard plugin's own cost (``plugin/tf_stats.c`` compiled with ``-O2`` and a publish stub):
  nanoseconds to count one PUBLISH among 10,000 devices, milliseconds to flush a window of
  10,000 active devices (without Mosquitto's delivery of the chunks).

Usage: ``python benchmarks/service_signals.py [--devices 10000] [--events 1000] [--json]``
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
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


PLUGIN = Path(__file__).resolve().parents[1] / "src" / "trustfleet" / "broker" / "plugin"
_HARNESS = r"""
#include <stdarg.h>
#include "tf_stats.c"
int mosquitto_broker_publish_copy(const char *c, const char *t, int n, const void *p, int q,
		bool r, mosquitto_property *x)
{ (void)c; (void)t; (void)n; (void)p; (void)q; (void)r; (void)x; return 0; }
void mosquitto_log_printf(int level, const char *fmt, ...) { (void)level; (void)fmt; }
static double since(struct timespec a)
{
	struct timespec b;
	clock_gettime(CLOCK_MONOTONIC, &b);
	return (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
}
int main(void)
{
	static struct tf_stats_table t;
	static int sessions[10000];
	static char ids[10000][32];
	struct timespec a;
	long n = 20000000;
	t.interval_s = 60; t.max_devices = 100000; t.max_bytes = 16384;
	stats_init(&t);
	for(int i = 0; i < 10000; i++){
		snprintf(ids[i], 32, "dev-%08d", i);
		stats_connect(&t, ids[i], &sessions[i], "10.0.0.1", false);
	}
	clock_gettime(CLOCK_MONOTONIC, &a);
	for(long k = 0; k < n; k++) stats_publish_seen(&t, ids[k % 10000], 100);
	printf("%.1f\n", since(a) / (double)n * 1e9);
	clock_gettime(CLOCK_MONOTONIC, &a);
	t.window_end = 0;
	stats_tick(&t);
	printf("%.2f\n", since(a) * 1e3);
	stats_cleanup(&t);
	return 0;
}
"""


def plugin_figures() -> dict[str, float]:
    """The guard's counting and flushing cost, measured on a harness built from its source."""
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        return {}
    with tempfile.TemporaryDirectory() as tmp:
        source, binary = Path(tmp) / "harness.c", Path(tmp) / "harness"
        source.write_text(_HARNESS)
        subprocess.run(
            [compiler, "-std=c11", "-O2", "-D_POSIX_C_SOURCE=200809L", f"-I{PLUGIN}",
             "-o", str(binary), str(source)],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        out = subprocess.run([str(binary)], check=True, capture_output=True, text=True).stdout
    count_ns, flush_ms = (float(x) for x in out.split())
    return {"plugin_count_publish_ns": count_ns, "plugin_flush_10k_devices_ms": flush_ms}


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
    return {**figures, **plugin_figures()}


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
