"""Fleet re-key: real agents make new keys in their tokens, enroll them, and keep publishing.

What runs (all on 127.0.0.1, in a temporary directory removed at the end):

1. A server home (``SimFleet.create_server``: CA keys in SoftHSM2), ``--devices`` devices from
   the factory service (one SoftHSM2 token each, P-256 identity key), attestation off, then
   ``trustfleet server run`` (EST, OCSP, broker, ingest).
2. The devices run in batches of ``--batch`` (each batch is its own model, ``rk-bNN``): every
   device of a batch is a real simulated agent process (``python -m trustfleet.agent.simulated
   run --json``, the product's agent code path) publishing QoS 1 telemetry every second. The
   batch enrolls, publishes, then ``trustfleet device rekey --model rk-bNN --wait --json``
   re-keys it (commands at ``[lifecycle] rekey_rate_per_s``): each agent generates a new key
   in its token, ``simplereenroll``s it with its current LDevID, switches, destroys the old
   key, reconnects. The agents keep publishing, then stop (SIGTERM: flush, print counters).

Figures: per device, time to completion = the device's answer stored - the request
(``answered_at - sent_at`` of its command row), p50/p99; total = the wall time of the
``device rekey --wait`` of a batch, summed over batches (and the slowest batch); telemetry
lost = rows the agents published (minus what was still queued at exit) - rows in the store;
one agent's resident memory (VmRSS) while publishing.

Usage::

    .venv/bin/python benchmarks/rekey.py [--devices 200] [--batch 50] [--keep] [--json]
"""

from __future__ import annotations

import contextlib
import json
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _procs import benchmark_parser, cpu_model, drop_workdir, emit, interrupts_and_deadline
from _procs import progress as progress_to

from trustfleet.errors import Unavailable
from trustfleet.sim.fleet import SimFleet, utc_now
from trustfleet.sim.process import ManagedProcess, wait_until

_MQTT = {"telemetry_interval_s": 1.0, "heartbeat_interval_s": 5.0, "connect_timeout_s": 5.0,
         "backoff_initial_s": 0.5, "backoff_max_s": 5.0}  # fmt: skip
_MAX_DEVICES = 2000
_MAX_TIME_S = 3 * 3600.0


def _start(directory: Path) -> ManagedProcess:
    argv: list[str | Path] = [sys.executable, "-m", "trustfleet.agent.simulated", "run",
                              "--device", directory, "--json"]  # fmt: skip
    process = ManagedProcess(argv, log=directory / "bench.out", name=directory.name)
    process.start()
    return process


def _rss_kb(pid: int) -> int:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _counters(process: ManagedProcess) -> dict[str, Any] | None:
    """SIGTERM the agent (it flushes and prints its counters); None if it printed none."""
    with contextlib.suppress(ProcessLookupError):
        process.signal(signal.SIGTERM)
    try:
        if process.proc is not None:
            process.proc.wait(120)
    finally:
        process.stop()
    text = process.log.read_text(errors="replace")
    at = text.rfind("\n{\n")
    try:
        counters: dict[str, Any] = json.loads(text[at + 1 : text.rindex("}") + 1])
    except ValueError:
        return None  # it died before printing them (its log says why)
    return counters


def _provision(fleet: SimFleet, *, devices: int, batch: int) -> list[tuple[str, list[str]]]:
    from trustfleet.services.factory import provision_devices
    from trustfleet.sim.agent import SimAgent

    batches = []
    for n, first in enumerate(range(0, devices, batch)):
        model = f"rk-b{n:02d}"
        count = min(batch, devices - first)
        made = provision_devices(
            fleet.srv.runtime, out_dir=fleet.devices_dir, count=count, model=model, now=utc_now()
        )
        ids = [d.device_id for d in made]
        for device_id in ids:
            agent = fleet.agents[device_id] = SimAgent(fleet.devices_dir / device_id)
            agent.configure({"mqtt": _MQTT})
        batches.append((model, ids))
    return batches


def _run_batch(fleet: SimFleet, model: str, ids: list[str], say: Any) -> dict[str, Any]:
    processes = {d: _start(fleet.agent(d).directory) for d in ids}
    try:
        wait_until(lambda: set(fleet.device_states(ids).values()) == {"enrolled"},
                   timeout_s=600, what=f"batch {model} to enroll")  # fmt: skip
        fleet.wait_telemetry(ids, rows=2, since=dict.fromkeys(ids, 0), timeout_s=300)
        rss = [_rss_kb(p.pid) for p in processes.values()]
        say(f"{model}: {len(ids)} agents publishing; re-keying")
        started = time.monotonic()
        done = fleet.srv.cli("device", "rekey", "--model", model, "--wait", "--timeout", "300",
                             "--json", timeout_s=600)  # fmt: skip
        wall_s = time.monotonic() - started
        doc = json.loads(done.stdout) if done.stdout.strip() else {"error": done.stderr}
        fleet.wait_telemetry(ids, rows=2, since=fleet.telemetry_counts(), timeout_s=300)
    finally:
        counters = {d: _counters(p) for d, p in processes.items()}
    return {"model": model, "wall_s": wall_s, "cli": doc, "rss_kb": rss, "counters": counters}


def _lost(fleet: SimFleet, counters: dict[str, dict[str, Any]]) -> dict[str, int]:
    published = {d: c["published"].get("telemetry", 0) - c["queue_depth"]
                 for d, c in counters.items()}  # fmt: skip

    def diff() -> dict[str, int]:
        stored = fleet.telemetry_counts()
        return {d: published[d] - stored[d] for d in published}

    with contextlib.suppress(Unavailable):
        wait_until(lambda: not any(diff().values()), timeout_s=60, what="the store to catch up")
    return diff()


def _completion_s(fleet: SimFleet, command_ids: list[str]) -> list[float]:
    times = []
    with fleet.srv.runtime.uow.begin(read_only=True) as tx:
        for command_id in command_ids:
            rec = tx.commands.get(command_id)
            if rec is not None and rec.answered_at is not None and rec.ok:
                times.append((rec.answered_at - rec.sent_at).total_seconds())
    return times


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run(args: Any, tmp: Path, say: Any) -> dict[str, Any]:
    fleet = SimFleet(tmp, size=args.devices)
    try:
        fleet.create_server()
        fleet.srv.configure({"attestation": {"enabled": False}})
        batches = _provision(fleet, devices=args.devices, batch=args.batch)
        say(f"{args.devices} devices provisioned in {len(batches)} batch(es)")
        fleet.srv.close_runtime()
        fleet.srv.start()
        results = [_run_batch(fleet, model, ids, say) for model, ids in batches]
        counters = {d: c for r in results for d, c in r["counters"].items() if c is not None}
        crashed = sorted(d for r in results for d, c in r["counters"].items() if c is None)
        lost = _lost(fleet, counters)
        commands = [c["id"] for r in results for c in r["cli"].get("commands", [])]
        per_device = _completion_s(fleet, commands)
    finally:
        fleet.stop()
    rss = [kb for r in results for kb in r["rss_kb"] if kb]
    return {
        "params": {"devices": args.devices, "batch": args.batch},
        "machine": {"cpu": cpu_model(), "python": sys.version.split()[0]},
        "done": sum(r["cli"].get("done", 0) for r in results),
        "failed": sum(r["cli"].get("failed", 0) for r in results),
        "pending": sum(r["cli"].get("pending", 0) for r in results),
        "per_device_s": {
            "p50": _pct(per_device, 0.5),
            "p99": _pct(per_device, 0.99),
            "max": max(per_device, default=None),
        },
        "total_s": sum(r["wall_s"] for r in results),
        "slowest_batch_s": max(r["wall_s"] for r in results),
        "telemetry_published": sum(c["published"].get("telemetry", 0) for c in counters.values()),
        "telemetry_lost": sum(max(v, 0) for v in lost.values()),
        "telemetry_duplicated": sum(-min(v, 0) for v in lost.values()),
        "reconnects": sum(c["reconnects"] for c in counters.values()),
        "agents_without_counters": crashed,
        "agent_rss_mb": {
            "median": statistics.median(rss) / 1024 if rss else None,
            "max": max(rss, default=0) / 1024,
        },
    }


def show(doc: dict[str, Any]) -> None:
    p, d = doc["per_device_s"], doc
    print(f"Fleet re-key — {d['params']['devices']} devices in batches of "
          f"{d['params']['batch']} ({d['machine']['cpu']})")  # fmt: skip
    print(f"  done {d['done']}, failed {d['failed']}, pending {d['pending']}")
    print(f"  per device: p50 {p['p50']:.2f} s, p99 {p['p99']:.2f} s, max {p['max']:.2f} s")
    print(f"  total {d['total_s']:.1f} s (slowest batch {d['slowest_batch_s']:.1f} s)")
    print(f"  telemetry: {d['telemetry_published']} published, {d['telemetry_lost']} lost, "
          f"{d['telemetry_duplicated']} duplicated; {d['reconnects']} reconnects")  # fmt: skip
    print(f"  one agent: {d['agent_rss_mb']['median']:.1f} MB RSS (median)")


def main(argv: list[str] | None = None) -> int:
    ap = benchmark_parser(__doc__, keep=True)
    ap.add_argument("--devices", type=int, default=200, help="devices to re-key (default 200)")
    ap.add_argument("--batch", type=int, default=50, help="agents running at once (default 50)")
    args = ap.parse_args(argv)
    if not 1 <= args.devices <= _MAX_DEVICES or not 1 <= args.batch <= args.devices:
        ap.error(f"--devices must be 1-{_MAX_DEVICES} and --batch 1-devices")
    tmp = Path(tempfile.mkdtemp(prefix="tf-bench-rekey-"))
    try:
        with interrupts_and_deadline(_MAX_TIME_S):
            doc = run(args, tmp, progress_to(quiet=args.json))
    finally:
        drop_workdir(tmp, keep=args.keep)
    emit(doc, as_json=args.json, show=show)
    return 0 if doc["failed"] == 0 and doc["pending"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
