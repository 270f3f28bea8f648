"""Helpers of benchmarks/campaign.py: stopping many children at once, /proc sampling, store
polling.

Every process is a :class:`~trustfleet.sim.process.ManagedProcess` (own session, stopped by its
process group, never by name). The sampler reads /proc once per interval and sums CPU and RSS
over the process tree of each root it was given (children found through their parent pid, so
Mosquitto, which the server starts in a session of its own, counts as the server's).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trustfleet.sim.process import ManagedProcess

_CLK_TCK = os.sysconf("SC_CLK_TCK")
_PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


def mem_available_mib() -> int:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) // 1024
    return 0


# -- processes -------------------------------------------------------------------------------


def stop_groups(procs: Iterable[ManagedProcess], *, timeout_s: float = 20.0) -> int:
    """SIGTERM every process group at once, then stop each (bounded by one shared deadline,
    SIGKILL after it).

    Returns how many groups had to be killed.
    """
    procs = list(procs)
    for proc in procs:
        if proc.running:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    codes = [proc.stop(timeout_s=max(0.05, deadline - time.monotonic())) for proc in procs]
    return sum(1 for code in codes if code == -signal.SIGKILL)


def session_leaders_below(roots: Iterable[int]) -> list[int]:
    """Descendants of ``roots`` that lead a session of their own (swtpm, Mosquitto): a group
    stop of the roots does not reach them."""
    procs = scan_proc()
    sids: dict[int, int] = {}
    for pid in procs:
        with contextlib.suppress(OSError):
            sids[pid] = os.getsid(pid)
    return [
        p.pid
        for root in roots
        for p in tree(procs, root)
        if p.pid != root and sids.get(p.pid) == p.pid
    ]


def kill_group_of(pid: int) -> None:
    """SIGKILL the process group led by ``pid`` (a session leader we started indirectly)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getpgid(pid) == pid:
            os.killpg(pid, signal.SIGKILL)


# -- /proc sampling --------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcInfo:
    pid: int
    ppid: int
    comm: str
    cpu_s: float  # own + reaped children
    rss_kib: int


def scan_proc() -> dict[int, ProcInfo]:
    """Every process this user can see, from /proc/<pid>/stat."""
    out: dict[int, ProcInfo] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            raw = Path(f"/proc/{name}/stat").read_text()
            comm = raw[raw.index("(") + 1 : raw.rindex(")")]
            f = raw[raw.rindex(")") + 2 :].split()
            ticks = int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
            out[int(name)] = ProcInfo(
                pid=int(name),
                ppid=int(f[1]),
                comm=comm,
                cpu_s=ticks / _CLK_TCK,
                rss_kib=int(f[21]) * _PAGE_KIB,
            )
    return out


def tree(procs: dict[int, ProcInfo], root: int) -> list[ProcInfo]:
    """``root`` and its descendants."""
    children: dict[int, list[int]] = {}
    for p in procs.values():
        children.setdefault(p.ppid, []).append(p.pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in procs:
            found.append(procs[pid])
            todo.extend(children.get(pid, ()))
    return found


@dataclass
class Series:
    """Utilisation (cores) and memory samples of one group of process trees."""

    roots: int = 1
    cpu_util: list[float] = field(default_factory=list)
    rss_mib: list[float] = field(default_factory=list)
    peak_one_rss_mib: float = 0.0  # largest single tree
    _last_cpu: float | None = None

    def summary(self) -> dict[str, Any]:
        u = self.cpu_util
        return {
            "cpu_avg_cores": round(sum(u) / len(u), 3) if u else None,
            "cpu_peak_cores": round(max(u), 3) if u else None,
            "rss_peak_mib": round(max(self.rss_mib), 1) if self.rss_mib else None,
            "rss_first_per_root_mib": (
                round(self.rss_mib[0] / max(1, self.roots), 1) if self.rss_mib else None
            ),
            "rss_peak_one_mib": round(self.peak_one_rss_mib, 1),
            "samples": len(u),
        }


class Sampler:
    """A thread that samples CPU and RSS of named groups of process trees every interval."""

    def __init__(self, groups: dict[str, list[int]], *, interval_s: float = 1.0) -> None:
        self.groups = groups
        self.interval_s = interval_s
        self.series = {name: Series(roots=len(roots)) for name, roots in groups.items()}
        self.machine: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        last_t = time.monotonic()
        last_m = _machine_busy()
        self._sample(0.0)
        while not self._stop.wait(self.interval_s):
            t = time.monotonic()
            m = _machine_busy()
            self.machine.append((m[0] - last_m[0]) / max(1.0, m[1] - last_m[1]))
            self._sample(t - last_t)
            last_t, last_m = t, m

    def _sample(self, dt: float) -> None:
        procs = scan_proc()
        for name, roots in self.groups.items():
            s = self.series[name]
            cpu = rss = 0.0
            for root in roots:
                members = tree(procs, root)
                one = sum(p.rss_kib for p in members) / 1024
                s.peak_one_rss_mib = max(s.peak_one_rss_mib, one)
                rss += one
                cpu += sum(p.cpu_s for p in members)
            s.rss_mib.append(rss)
            if s._last_cpu is not None and dt > 0:
                s.cpu_util.append(max(0.0, cpu - s._last_cpu) / dt)
            s._last_cpu = cpu

    def summary(self) -> dict[str, Any]:
        m = self.machine
        out: dict[str, Any] = {k: v.summary() for k, v in self.series.items()}
        out["machine"] = {
            "busy_avg": round(sum(m) / len(m), 3) if m else None,
            "busy_peak": round(max(m), 3) if m else None,
        }
        return out


def _machine_busy() -> tuple[float, float]:
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return float(sum(fields) - idle), float(sum(fields))


# -- store ------------------------------------------------------------------------------------


def device_facts(rt: Any, ids: set[str]) -> dict[str, tuple[str, bool, str | None]]:
    """(state, seen over MQTT, firmware version) of the given devices."""
    out: dict[str, tuple[str, bool, str | None]] = {}
    offset = 0
    with rt.uow.begin(read_only=True) as tx:
        while True:
            page = tx.devices.list(limit=1000, offset=offset)
            for d in page:
                if d.id in ids:
                    out[d.id] = (d.state, d.last_seen_at is not None, d.firmware_version)
            if len(page) < 1000:
                return out
            offset += 1000


def campaign_rows(rt: Any, campaign_id: str) -> tuple[Any, list[Any]]:
    """The campaign record and all its device rows."""
    rows: list[Any] = []
    with rt.uow.begin(read_only=True) as tx:
        campaign = tx.campaigns.require(campaign_id)
        while True:
            page = tx.campaigns.devices(campaign_id, limit=1000, offset=len(rows))
            rows += page
            if len(page) < 1000:
                return campaign, rows


def tail(path: Path, max_bytes: int = 1500) -> str:
    with contextlib.suppress(OSError):
        data = path.read_bytes()
        return data[-max_bytes:].decode(errors="replace")
    return ""
