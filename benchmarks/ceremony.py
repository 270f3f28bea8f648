"""Offline root ceremonies: server init, TUF root and online-key rotations, the root CRL.

Makes a home and its offline folder with the harness (``SimServer.create``: SoftHSM2 tokens,
the custodians' PINs as files), then times each ceremony through its service function with two
of the three TUF root custodians (``SimServer.ceremony_keys``); prints the medians.

    .venv/bin/python benchmarks/ceremony.py [--rounds 5] [--json]
"""

from __future__ import annotations

import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _procs import benchmark_parser
from rich.console import Console
from rich.table import Table

from trustfleet.services.ceremony import sign_root_crl
from trustfleet.services.ota import rotate_online_keys, rotate_root
from trustfleet.sim.server import SimServer

MAX_ROUNDS = 50


def _median_s(action: Callable[[], object], rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        action()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def run(work: Path, rounds: int) -> dict[str, Any]:
    """The figures of one run in ``work``."""
    start = time.perf_counter()
    server = SimServer.create(work / "home", now=datetime.now(UTC))
    figures: dict[str, Any] = {"server_init_s": time.perf_counter() - start, "rounds": rounds}
    rt = server.runtime
    try:
        two = server.ceremony_keys(["tf-tuf-root-1", "tf-tuf-root-3"])
        root = server.ceremony_keys(["tf-root"])
        figures["rotate_root_2_of_3_s"] = _median_s(
            lambda: rotate_root(rt, two, now=datetime.now(UTC)), rounds
        )
        figures["rotate_online_s"] = _median_s(
            lambda: rotate_online_keys(rt, two, now=datetime.now(UTC)), rounds
        )
        figures["crl_root_s"] = _median_s(
            lambda: sign_root_crl(rt, root, now=datetime.now(UTC)), rounds
        )
    finally:
        server.close_runtime()
    return figures


def main() -> int:
    """Run the benchmark; print a table or ``--json``."""
    ap = benchmark_parser(__doc__, keep=True)
    ap.add_argument("--rounds", type=int, default=5, help=f"repetitions (1..{MAX_ROUNDS})")
    args = ap.parse_args()
    if not 1 <= args.rounds <= MAX_ROUNDS:
        ap.error(f"--rounds must be within 1..{MAX_ROUNDS}")
    work = Path(tempfile.mkdtemp(prefix="tf-bench-ceremony-"))
    try:
        figures = run(work, args.rounds)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    table = Table("step", "seconds")
    for key, value in figures.items():
        if key.endswith("_s"):
            table.add_row(key.removesuffix("_s"), f"{value:.3f}")
    Console().print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
