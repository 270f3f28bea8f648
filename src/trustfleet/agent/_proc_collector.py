"""The Linux ``/proc`` metrics collector (see :mod:`trustfleet.agent.metrics`)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final

from trustfleet.agent import _procfs as procfs
from trustfleet.monitoring import MetricsRecord

__all__ = ["AUTH_FAILURE_MARKERS", "ProcCollector", "ProcLimits"]

AUTH_FAILURE_MARKERS: Final = (
    "Failed password",
    "authentication failure",
    "Invalid user",
    "FAILED LOGIN",
)
"""An auth log line with one of these is a failed login (sshd, PAM, login)."""
_MAX_PROC_FILE_BYTES: Final = 1 << 20


@dataclass(frozen=True)
class ProcLimits:
    """The bounds of one collection (what a hostile or huge host cannot make unbounded)."""

    max_processes: int = 4096
    """Process folders looked at for executables."""
    max_executables: int = 64
    """Distinct executables hashed and reported."""
    max_hash_bytes: int = 64 << 20
    """Executables and watched files larger than this are not hashed."""
    max_auth_log_bytes: int = 256 << 10
    """Auth log read per window (the rest waits for the next window)."""
    max_watched_files: int = 32


def _read(path: Path, max_bytes: int = _MAX_PROC_FILE_BYTES) -> str:
    try:
        with path.open("rb") as handle:
            return handle.read(max_bytes).decode("utf-8", "replace")
    except OSError:
        return ""


def _sha256(path: Path, max_bytes: int) -> str | None:
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            if os.fstat(handle.fileno()).st_size > max_bytes:
                return None
            for block in iter(lambda: handle.read(1 << 16), b""):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()


def _endpoint(addr: str, port: int) -> str:
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


class ProcCollector:
    """Reads a Linux device's metrics from ``/proc`` (counters as deltas between windows).

    Args:
        device_id: The device.
        model: Its model.
        root: The ``/proc`` tree (a test passes a fake one).
        watched_files: Files whose SHA-256 is reported as ``path=sha256``.
        auth_log: A log of failed logins (e.g. ``/var/log/auth.log``); None: not reported.
        limits: The bounds of one collection.
    """

    def __init__(
        self,
        *,
        device_id: str,
        model: str,
        root: Path = Path("/proc"),
        watched_files: Sequence[Path] = (),
        auth_log: Path | None = None,
        limits: ProcLimits = ProcLimits(),
    ) -> None:
        self.device_id, self.model, self.root, self.limits = device_id, model, root, limits
        self.watched = tuple(watched_files)[: limits.max_watched_files]
        self.auth_log = auth_log
        self._net = procfs.parse_net_dev(_read(root / "net" / "dev"))
        self._cpu = procfs.parse_cpu(_read(root / "stat"))
        self._exe_cache: dict[tuple[int, int, int, int], str] = {}
        self._auth_offset = self._auth_size()

    def collect(self, end: datetime, interval_s: int) -> MetricsRecord:
        """One window: counters since the previous call, gauges and sets now."""
        numbers: dict[str, float] = {}
        sets: dict[str, frozenset[str]] = {}
        self._network(numbers)
        self._sockets(numbers, sets)
        self._processes(numbers, sets)
        self._cpu_memory(numbers)
        if self.auth_log is not None:
            numbers["failed-logins"] = float(self._failed_logins(self.auth_log))
        if self.watched:
            sets["watched-files"] = self._watched_files()
        return MetricsRecord(self.device_id, self.model, "device", end, interval_s, numbers, sets)

    def _network(self, numbers: dict[str, float]) -> None:
        now = procfs.parse_net_dev(_read(self.root / "net" / "dev"))
        before, self._net = self._net, now
        for name, a, b in (
            ("all-bytes-in", now.bytes_in, before.bytes_in),
            ("all-bytes-out", now.bytes_out, before.bytes_out),
            ("all-packets-in", now.packets_in, before.packets_in),
            ("all-packets-out", now.packets_out, before.packets_out),
        ):
            numbers[name] = float(max(0, a - b))  # a counter reset counts as 0

    def _sockets(self, numbers: dict[str, float], sets: dict[str, frozenset[str]]) -> None:
        net = self.root / "net"
        tcp = [
            *procfs.parse_sockets(_read(net / "tcp")),
            *procfs.parse_sockets(_read(net / "tcp6")),
        ]
        udp = [
            *procfs.parse_sockets(_read(net / "udp")),
            *procfs.parse_sockets(_read(net / "udp6")),
        ]
        tcp_ports, udp_ports = procfs.listening_tcp(tcp), procfs.listening_udp(udp)
        established = procfs.established_tcp(tcp)
        sets["listening-tcp-ports"] = frozenset(str(p) for p in tcp_ports)
        sets["listening-udp-ports"] = frozenset(str(p) for p in udp_ports)
        numbers["num-listening-tcp-ports"] = float(len(tcp_ports))
        numbers["num-listening-udp-ports"] = float(len(udp_ports))
        numbers["num-established-tcp-connections"] = float(len(established))
        sets["remote-endpoints"] = frozenset(
            _endpoint(s.remote_addr, s.remote_port) for s in established
        )
        sets["destination-ip-addresses"] = frozenset(s.remote_addr for s in established)

    def _pids(self) -> list[str]:
        try:
            names = [e.name for e in os.scandir(self.root) if e.name.isdigit()]
        except OSError:
            return []
        return names

    def _processes(self, numbers: dict[str, float], sets: dict[str, frozenset[str]]) -> None:
        pids = self._pids()
        numbers["num-processes"] = float(len(pids))
        hashes: set[str] = set()
        for pid in sorted(pids, key=int)[: self.limits.max_processes]:
            if len(hashes) >= self.limits.max_executables:
                break
            digest = self._executable(self.root / pid / "exe")
            if digest is not None:
                hashes.add(digest)
        sets["executables"] = frozenset(hashes)

    def _executable(self, exe: Path) -> str | None:
        """The SHA-256 of a process's executable, cached by inode and mtime."""
        try:
            st = os.stat(exe)
        except OSError:
            return None  # a kernel thread, a process gone, or one we may not read
        key = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)
        cached = self._exe_cache.get(key)
        if cached is None:
            cached = _sha256(exe, self.limits.max_hash_bytes)
            if cached is None:
                return None
            if len(self._exe_cache) >= 4 * self.limits.max_executables:
                self._exe_cache.clear()
            self._exe_cache[key] = cached
        return cached

    def _cpu_memory(self, numbers: dict[str, float]) -> None:
        now = procfs.parse_cpu(_read(self.root / "stat"))
        before, self._cpu = self._cpu, now
        total, idle = now.total - before.total, now.idle - before.idle
        if total > 0:
            numbers["cpu-percent"] = round(min(100.0, max(0.0, 100.0 * (1 - idle / total))), 2)
        memory = procfs.parse_meminfo_percent(_read(self.root / "meminfo"))
        if memory is not None:
            numbers["memory-percent"] = memory

    def _auth_size(self) -> int:
        if self.auth_log is None:
            return 0
        try:
            return self.auth_log.stat().st_size
        except OSError:
            return 0

    def _failed_logins(self, log: Path) -> int:
        """Failed logins in the auth log's lines written since the last window."""
        size = self._auth_size()
        if size < self._auth_offset:
            self._auth_offset = 0  # rotated or truncated: read the new file from its start
        try:
            with log.open("rb") as handle:
                handle.seek(self._auth_offset)
                chunk = handle.read(self.limits.max_auth_log_bytes)
        except OSError:
            return 0
        complete = chunk[: chunk.rfind(b"\n") + 1]
        if not complete and len(chunk) == self.limits.max_auth_log_bytes:
            complete = chunk  # one line longer than the bound: skip it
        self._auth_offset += len(complete)
        text = complete.decode("utf-8", "replace")
        return sum(1 for line in text.splitlines() if any(m in line for m in AUTH_FAILURE_MARKERS))

    def _watched_files(self) -> frozenset[str]:
        out = set()
        for path in self.watched:
            digest = _sha256(path, self.limits.max_hash_bytes)
            if digest is not None:
                out.add(f"{path}={digest}")
        return frozenset(out)
