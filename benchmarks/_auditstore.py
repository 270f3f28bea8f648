"""The audit benchmark's store phases: raw appends, and appends while a sequencer integrates.

Both phases append security events through the same path (``tx.events.append`` in write
transactions of ``batch`` events, as every state change does), for a fixed time. The audited
phase also runs a sequencer — ``services.audit.on_each`` every ``[audit] interval_s`` (1 s), in
its own process as ``trustfleet server run`` runs it, or in a thread of the appending process
— and counts an entry only once a signed checkpoint covers it.
"""

from __future__ import annotations

import bisect
import multiprocessing
import queue
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from trustfleet.server.audit_sequencer import run_sequencer
from trustfleet.services.audit import Integrated, on_each
from trustfleet.services.runtime import Runtime
from trustfleet.settings import load_server_settings

__all__ = ["append_for", "audited_phase", "catch_up", "raw_phase", "sequence", "sequencer_loop"]

SEQUENCER_READY_S = 60.0
"""How long the sequencer may take to start and log in to its token (a bound, not a figure)."""
CATCH_UP_S = 120.0
"""How long the last checkpoint may take after the appends stop (a bound, not a figure)."""


class _Stop(Protocol):
    def is_set(self) -> bool: ...
    def set(self) -> None: ...
    def wait(self, timeout: float | None = None) -> bool: ...


class _Reports(Protocol):
    def put(self, item: Any) -> None: ...
    def get(self, block: bool = True, timeout: float | None = None) -> Any: ...


def _now() -> datetime:
    return datetime.now(UTC)


def append_for(rt: Runtime, *, batch: int, seconds: float) -> list[tuple[int, float]]:
    """Append events in transactions of ``batch`` for ``seconds``.

    Returns:
        ``(last id, monotonic commit time)`` of each transaction, in order.
    """
    commits: list[tuple[int, float]] = []
    clock = time.monotonic
    end, n = clock() + seconds, 0
    while clock() < end:
        with rt.uow.begin() as tx:
            for _ in range(batch):
                record = tx.events.append(
                    type="device.quarantined",
                    actor="operator:alice@ops1",
                    subject=f"device:dev-bench{n % 1000:04d}",
                    details={"reason": "benchmark", "n": n},
                    now=_now(),
                    origin="cli:127.0.0.1",
                )
                n += 1
        commits.append((record.id, clock()))
    return commits


def catch_up(rt: Runtime) -> int:
    """Integrate every event already committed (untimed, between phases); the tree's size."""
    size = 0
    while (done := on_each(rt, now=_now)) is not None:
        size = done.checkpoint.size
    return size


def raw_phase(rt: Runtime, *, batch: int, seconds: float) -> dict[str, Any]:
    """Appends alone: no integration runs."""
    start = time.monotonic()
    commits = append_for(rt, batch=batch, seconds=seconds)
    elapsed = commits[-1][1] - start
    count = len(commits) * batch
    return {"batch": batch, "entries": count, "seconds": elapsed, "entries_per_s": count / elapsed}


def sequence(home: str, stop: _Stop, reports: _Reports) -> None:
    """The sequencer process: opens the home and runs :func:`sequencer_loop`."""
    rt = Runtime.open(load_server_settings(Path(home)))
    try:
        sequencer_loop(rt, stop, reports)
    finally:
        rt.close()


def sequencer_loop(rt: Runtime, stop: _Stop, reports: _Reports) -> None:
    """``server run``'s sequencer loop (``audit_sequencer.run_sequencer``), reporting
    ``(size, monotonic time after the round, round seconds)`` after each new checkpoint."""
    rt.audit_key()  # log in to the token before the clock starts
    reports.put(("ready", 0, time.monotonic(), 0.0))

    def report(done: Integrated | None, round_s: float) -> None:
        if done is not None:
            reports.put(("checkpoint", done.checkpoint.size, time.monotonic(), round_s))

    run_sequencer(rt, stop, on_round=report)  # type: ignore[arg-type]  # a process Event too


def _start(rt: Runtime, how: str) -> tuple[_Stop, _Reports, Any]:
    if how == "process":
        home = str(rt.settings.home)
        ctx = multiprocessing.get_context("spawn")
        stop: _Stop = ctx.Event()
        reports: _Reports = ctx.Queue()
        worker: Any = ctx.Process(target=sequence, args=(home, stop, reports), daemon=True)
    else:
        stop, reports = threading.Event(), queue.Queue()
        worker = threading.Thread(target=sequencer_loop, args=(rt, stop, reports), daemon=True)
    worker.start()
    kind = reports.get(timeout=SEQUENCER_READY_S)[0]
    if kind != "ready":
        raise RuntimeError(f"the sequencer said {kind!r} before it was ready")
    return stop, reports, worker


def _wait_for(reports: _Reports, size: int) -> list[tuple[int, float, float]]:
    """Checkpoint reports until one covers ``size`` entries."""
    seen: list[tuple[int, float, float]] = []
    deadline = time.monotonic() + CATCH_UP_S
    while not seen or seen[-1][0] < size:
        left = deadline - time.monotonic()
        if left <= 0:
            raise RuntimeError(f"no checkpoint covered {size} entries within {CATCH_UP_S} s")
        _, at_size, at, round_s = reports.get(timeout=left)
        seen.append((at_size, at, round_s))
    return seen


def _delays(
    commits: list[tuple[int, float]], checkpoints: list[tuple[int, float, float]]
) -> list[float]:
    """For each transaction: from its commit to the first checkpoint that covers it."""
    sizes = [size for size, _, _ in checkpoints]
    return [checkpoints[bisect.bisect_left(sizes, last)][1] - at for last, at in commits]


def audited_phase(rt: Runtime, *, batch: int, seconds: float, how: str) -> dict[str, Any]:
    """Appends while the sequencer integrates; durable = covered by a signed checkpoint."""
    first = catch_up(rt)
    stop, reports, worker = _start(rt, how)
    try:
        start = time.monotonic()
        commits = append_for(rt, batch=batch, seconds=seconds)
        appended_s = commits[-1][1] - start
        checkpoints = _wait_for(reports, commits[-1][0])
    finally:
        stop.set()
        worker.join(timeout=CATCH_UP_S)
    count = commits[-1][0] - first
    durable_s = checkpoints[-1][1] - start
    during = [(size, at) for size, at, _ in checkpoints if at <= commits[-1][1]]
    steady = (during[-1][0] - first) / (during[-1][1] - start) if during else None
    delays = sorted(_delays(commits, checkpoints))
    rounds = [round_s for *_, round_s in checkpoints]
    return {
        "batch": batch,
        "sequencer": how,
        "entries": count,
        "append_seconds": appended_s,
        "appended_per_s": count / appended_s,
        "durable_seconds": durable_s,
        "entries_per_s": count / durable_s,
        "steady_per_s": steady,
        "checkpoints": len(checkpoints),
        "max_round_s": max(rounds),
        "max_delay_s": delays[-1],
        "p50_delay_s": delays[len(delays) // 2],
    }
