"""Audit log throughput: raw appends against durable audited appends, integration, proofs.

What runs, in one process (plus the sequencer's), on a real server home made by
``init_server_home`` in a temporary folder (checkpoint key: Ed25519 in SoftHSM2):

1. **raw**: security events appended through ``tx.events.append`` in write transactions of B
   events for ``--duration`` seconds, no integration (SQLite, the default store; and PostgreSQL
   with ``--postgres URL`` or ``--postgres auto``, a throwaway cluster as the tests start one);
2. **audited**: the same appends while the sequencer runs ``services.audit.on_each`` every
   ``[audit] interval_s`` (1 s; in its own process as ``server run`` does, or ``--sequencer
   thread``). An entry counts once a signed checkpoint covers it; the rate is entries / (first
   append → the checkpoint covering the last one). Max delay = commit → covering checkpoint;
3. **integration alone**: leaf hashes, ``append_leaves`` and a signed note (in-memory Ed25519
   key) for ``--leaves`` leaves, ``--integrate-batch`` per checkpoint, tiles in a dict;
4. **proofs** in the largest of those trees: inclusion and consistency proof sizes against
   32·⌈log2 N⌉, median time to make one from the tiles and to verify it.

Usage::

    .venv/bin/python benchmarks/audit.py [--quick] [--postgres auto|URL] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import sqlite3
import sys
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _auditkit import build_tree, proof_figures
from _auditstore import audited_phase, raw_phase
from _procs import (
    benchmark_parser,
    cell,
    cpu_model,
    drop_workdir,
    emit,
    figures_table,
    interrupts_and_deadline,
    progress,
    report_console,
)

from trustfleet.services.home import HomeOptions, init_server_home
from trustfleet.services.runtime import Runtime
from trustfleet.settings import load_server_settings

MAX_TIME_S = 900
TARGET_PER_S = 10_000
TESSERA_PER_S = 1_500
_QUICK = {"duration": 2.0, "leaves": [10_000, 100_000], "proof_samples": 300}


@contextlib.contextmanager
def _postgres(option: str | None) -> Iterator[str | None]:
    """The PostgreSQL URL to use: none, the one given, or a throwaway cluster's (``auto``)."""
    if option is None or option != "auto":
        yield option
        return
    from support.postgres import running_cluster  # _procs put tests/ on the path

    with running_cluster() as cluster:
        name = cluster.create_database()
        yield f"postgresql+psycopg://postgres@127.0.0.1:{cluster.port}/{name}"


def _store_rows(
    work: Path, label: str, *, url: str | None, args: argparse.Namespace
) -> list[dict[str, Any]]:
    """Raw and audited phases, for each batch size, in one new home on this store."""
    log = progress(quiet=args.json)
    home = work / f"home-{label}"
    options = HomeOptions(
        organization="Audit Bench", store_url=url, pins_out=work / f"pins-{label}"
    )
    init_server_home(home, options=options, now=datetime.now(UTC))
    rt = Runtime.open(load_server_settings(home))
    rows = []
    try:
        for batch in args.batches:
            log(f"{label}: raw appends, {batch} per transaction, {args.duration:g} s …")
            raw = raw_phase(rt, batch=batch, seconds=args.duration)
            log(f"{label}: audited appends, {batch} per transaction, {args.duration:g} s …")
            audited = audited_phase(rt, batch=batch, seconds=args.duration, how=args.sequencer)
            ratio = audited["entries_per_s"] / raw["entries_per_s"]
            rows.append({"store": label, "raw": raw, "audited": audited, "ratio": ratio})
    finally:
        rt.close()
    return rows


def _memory_figures(args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    log = progress(quiet=args.json)
    trees = []
    tree = None
    for leaves in args.leaves:
        log(f"integrating {leaves:,} leaves in memory, {args.integrate_batch:,} per checkpoint …")
        tree = build_tree(leaves, batch=args.integrate_batch)
        trees.append(tree.figures)
    assert tree is not None
    log(f"proofs in the tree of {tree.size:,}: {args.proof_samples} samples …")
    return trees, proof_figures(tree, samples=args.proof_samples)


def machine() -> dict[str, Any]:
    """The machine and the versions the figures depend on."""
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu_model(),
        "loadavg_1m": os.getloadavg()[0],
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every phase; the figures' document."""
    work = Path(tempfile.mkdtemp(prefix="tf-bench-audit-"))
    try:
        rows = _store_rows(work, "sqlite", url=None, args=args)
        with _postgres(args.postgres) as url:
            if url is not None:
                rows += _store_rows(work, "postgresql", url=url, args=args)
        trees, proofs = _memory_figures(args)
    finally:
        drop_workdir(work, keep=args.keep)
    return {
        "benchmark": "audit",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "params": {
            k: getattr(args, k)
            for k in (
                "duration",
                "batches",
                "sequencer",
                "leaves",
                "integrate_batch",
                "proof_samples",
                "quick",
            )
        },
        "stores": rows,
        "integration": trees,
        "proofs": proofs,
        "context": {"target_per_s": TARGET_PER_S, "tessera_published_per_s": TESSERA_PER_S},
    }


def _show_stores(console: Any, rows: list[dict[str, Any]]) -> None:
    cols = ("store", "B", "raw /s", "audited /s", "audited ÷ raw", "steady /s", "appended /s",
            "checkpoints", "max delay s", "p50 delay s", "max round s")  # fmt: skip
    table = figures_table(cols, left=("store",), title="appends (durable = in a signed checkpoint)")
    for row in rows:
        raw, aud = row["raw"], row["audited"]
        table.add_row(
            row["store"], str(raw["batch"]), f"{raw['entries_per_s']:,.0f}",
            f"{aud['entries_per_s']:,.0f}", f"{row['ratio']:.0%}",
            cell(aud["steady_per_s"], ",.0f"), f"{aud['appended_per_s']:,.0f}",
            str(aud["checkpoints"]),
            f"{aud['max_delay_s']:.2f}", f"{aud['p50_delay_s']:.2f}", f"{aud['max_round_s']:.2f}",
        )  # fmt: skip
    console.print(table)


def _show_memory(console: Any, trees: list[dict[str, Any]], proofs: dict[str, Any]) -> None:
    table = figures_table(
        ("leaves", "per checkpoint", "entries/s", "leaf hashes s", "append_leaves s", "sign s"),
        left=(), title="integration alone (in memory)",
    )  # fmt: skip
    for t in trees:
        table.add_row(
            f"{t['leaves']:,}", f"{t['batch']:,}", f"{t['entries_per_s']:,.0f}",
            f"{t['leaf_hash_s']:.2f}", f"{t['append_leaves_s']:.2f}", f"{t['sign_s']:.3f}",
        )  # fmt: skip
    console.print(table)
    p = proofs
    table = figures_table(
        ("proof", "bytes (median / max)", "make µs", "verify µs"),
        left=("proof",),
        title=f"proofs, N = {p['size']:,} (32·⌈log2 N⌉ = {p['log2_bound_bytes']} B)",
    )
    for kind in ("inclusion", "consistency"):
        table.add_row(
            kind, f"{p[kind + '_bytes_median']:.0f} / {p[kind + '_bytes_max']}",
            f"{p[kind + '_make_us']:.1f}", f"{p[kind + '_verify_us']:.1f}",
        )  # fmt: skip
    console.print(table)


def print_rich(doc: dict[str, Any]) -> None:
    """The figures as tables."""
    p, m = doc["params"], doc["machine"]
    console = report_console(
        "Audit log benchmark",
        f"{p['duration']:g} s per phase, sequencer in a {p['sequencer']}; {m['nproc']} cores "
        f"({m['cpu']}), load {m['loadavg_1m']:.2f}, Python {m['python']}, SQLite {m['sqlite']}",
        width=132,
    )
    _show_stores(console, doc["stores"])
    _show_memory(console, doc["integration"], doc["proofs"])
    console.print(
        "audited = entries / (first append → the checkpoint covering the last); steady = "
        "the last checkpoint signed while appending / its time; appended = appends/s meanwhile"
    )
    console.print(
        f"target ≥ {TARGET_PER_S:,} durable appends/s; for context (published, not measured "
        f"here): Tessera ≈ {TESSERA_PER_S:,}/s on a small VM"
    )


def _int_list(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The options; ``--quick`` overrides the durations and sizes for a run under 30 s."""
    ap = benchmark_parser(__doc__, keep=True)
    ap.add_argument("--duration", type=float, default=8.0, help="seconds per store phase (8)")
    ap.add_argument("--batches", type=_int_list, default=[1, 100], help="events per transaction")
    ap.add_argument("--sequencer", choices=("process", "thread"), default="process")
    ap.add_argument("--leaves", type=_int_list, default=[100_000, 1_000_000])
    ap.add_argument("--integrate-batch", type=int, default=10_000, help="leaves per checkpoint")
    ap.add_argument("--proof-samples", type=int, default=2000)
    ap.add_argument("--postgres", metavar="auto|URL", help="also measure PostgreSQL")
    ap.add_argument("--quick", action="store_true", help="a run under 30 s")
    args = ap.parse_args(argv)
    if args.quick:
        for key, value in _QUICK.items():
            setattr(args, key, value)
    if not 0.5 <= args.duration <= 120 or not all(1 <= b <= 10_000 for b in args.batches):
        ap.error("--duration must be 0.5..120 s and each batch 1..10000")
    if not all(2 <= n <= 10_000_000 for n in args.leaves) or args.integrate_batch < 1:
        ap.error("--leaves must be 2..10^7 each and --integrate-batch at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with interrupts_and_deadline(MAX_TIME_S):
        doc = run(args)
    emit(doc, as_json=args.json, show=print_rich)
    return 0


if __name__ == "__main__":
    sys.exit(main())
