"""Start-up and stop of ``trustfleet server run``, and what a child would cost if spawned.

What runs: ``--rounds`` times, a new home (as ``server init`` makes it, SQLite store) and
``trustfleet server run`` on free loopback ports, timed from the process start until ``GET
/readyz`` answers 200 (broker up, every child up, ingest subscribed), then from SIGTERM until
the process group is gone. The children are forked by multiprocessing's fork server, which
imports their modules once; for comparison, each child's entry module is imported in a fresh
interpreter (``python -c "import M"``, the median of ``--reps``): what a spawned child pays
before it does anything.

Usage::

    .venv/bin/python benchmarks/startup.py [--rounds N] [--reps N] [--json] [--keep]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _procs import benchmark_parser, cpu_model, drop_workdir, emit, params, progress

from trustfleet.server.run import CHILD_MODULES  # what the fork server preloads
from trustfleet.sim.server import SimServer


def _import_s(module: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", f"import {module}"], check=True)
    return time.perf_counter() - started


def _round(base: Path) -> tuple[float, float]:
    server = SimServer.create(base / "home", now=datetime.now(UTC))
    started = time.perf_counter()
    server.start()
    ready = time.perf_counter() - started
    started = time.perf_counter()
    server.stop()
    return ready, time.perf_counter() - started


def main() -> int:
    ap = benchmark_parser(__doc__, keep=True)
    ap.add_argument("--rounds", type=int, default=3, help="server starts (default 3)")
    ap.add_argument("--reps", type=int, default=3, help="imports per child module (default 3)")
    args = ap.parse_args()
    say = progress(quiet=args.json)
    tmp = Path(tempfile.mkdtemp(prefix="tf-bench-startup-"))
    try:
        imports = {}
        for module in CHILD_MODULES:
            imports[module] = statistics.median(_import_s(module) for _ in range(args.reps))
            say(f"import {module}: {imports[module]:.2f} s")
        starts, stops = [], []
        for index in range(args.rounds):
            ready, stopped = _round(tmp / f"round-{index}")
            starts.append(ready)
            stops.append(stopped)
            say(f"round {index + 1}/{args.rounds}: ready {ready:.2f} s, stopped {stopped:.2f} s")
    finally:
        drop_workdir(tmp, keep=args.keep)
    doc: dict[str, Any] = {
        "params": params(args, "rounds", "reps"),
        "cpu": cpu_model(),
        "ready_s_median": round(statistics.median(starts), 2),
        "stop_s_median": round(statistics.median(stops), 2),
        "child_import_s": {m: round(s, 2) for m, s in imports.items()},
        "children_import_s_total": round(sum(imports.values()), 2),
    }
    emit(doc, as_json=args.json, show=_show)
    return 0


def _show(doc: dict[str, Any]) -> None:
    print(f"server run ready (median of {doc['params']['rounds']}): {doc['ready_s_median']} s")
    print(f"server run stopped (median): {doc['stop_s_median']} s")
    print(
        f"what spawning the {len(doc['child_import_s'])} children would import first: "
        f"{doc['children_import_s_total']} s in all"
    )


if __name__ == "__main__":
    sys.exit(main())
