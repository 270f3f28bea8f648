"""Pure parsers of Linux ``/proc`` files (the metrics collector's readings), each bounded.

Every function takes the file's text and returns plain values; nothing here opens a file. A
malformed line is skipped, never an error: ``/proc`` differs across kernels.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

__all__ = [
    "CpuTimes",
    "NetTotals",
    "Socket",
    "established_tcp",
    "listening_tcp",
    "listening_udp",
    "parse_cpu",
    "parse_meminfo_percent",
    "parse_net_dev",
    "parse_sockets",
]

_TCP_LISTEN = "0A"
_TCP_ESTABLISHED = "01"
_UDP_UNCONNECTED = "07"


@dataclass(frozen=True)
class NetTotals:
    """Counters of every interface but loopback, since boot."""

    bytes_in: int = 0
    bytes_out: int = 0
    packets_in: int = 0
    packets_out: int = 0


@dataclass(frozen=True)
class CpuTimes:
    """The ``cpu`` line of ``/proc/stat``: all jiffies, and the idle ones (idle + iowait)."""

    total: int = 0
    idle: int = 0


@dataclass(frozen=True)
class Socket:
    """One row of ``/proc/net/{tcp,tcp6,udp,udp6}``."""

    local_port: int
    remote_addr: str
    remote_port: int
    state: str


def parse_net_dev(text: str, *, max_lines: int = 1024) -> NetTotals:
    """Sum ``/proc/net/dev`` over every interface except ``lo``."""
    totals = [0, 0, 0, 0]
    for line in text.splitlines()[2 : 2 + max_lines]:
        name, sep, rest = line.partition(":")
        fields = rest.split()
        if not sep or name.strip() == "lo" or len(fields) < 10:
            continue
        try:
            values = (int(fields[0]), int(fields[8]), int(fields[1]), int(fields[9]))
        except ValueError:
            continue
        totals = [a + b for a, b in zip(totals, values, strict=True)]
    return NetTotals(*totals)


def parse_cpu(text: str) -> CpuTimes:
    """The aggregate ``cpu`` line of ``/proc/stat``."""
    for line in text.splitlines()[:4]:
        fields = line.split()
        if fields and fields[0] == "cpu":
            try:
                values = [int(v) for v in fields[1:11]]
            except ValueError:
                return CpuTimes()
            idle = values[3] + (values[4] if len(values) > 4 else 0)
            return CpuTimes(total=sum(values[:8]), idle=idle)
    return CpuTimes()


def parse_meminfo_percent(text: str) -> float | None:
    """Used memory in percent (``1 - MemAvailable / MemTotal``), or None."""
    values: dict[str, int] = {}
    for line in text.splitlines()[:64]:
        key, _, rest = line.partition(":")
        if key in ("MemTotal", "MemAvailable"):
            try:
                values[key] = int(rest.split()[0])
            except (ValueError, IndexError):
                return None
    total, available = values.get("MemTotal", 0), values.get("MemAvailable")
    if total <= 0 or available is None:
        return None
    return round(min(100.0, max(0.0, 100.0 * (1 - available / total))), 2)


def _address(hex_addr: str) -> str:
    """A ``/proc/net`` address (host-order 32-bit words in hex) as text."""
    raw = bytes.fromhex(hex_addr)
    if len(raw) not in (4, 16):
        raise ValueError("not an address")
    host = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(host))


def parse_sockets(text: str, *, max_lines: int = 4096) -> list[Socket]:
    """The rows of ``/proc/net/{tcp,tcp6,udp,udp6}`` (at most ``max_lines``)."""
    sockets = []
    for line in text.splitlines()[1 : 1 + max_lines]:
        fields = line.split()
        if len(fields) < 4:
            continue
        try:
            _, local_port = fields[1].split(":")
            remote, remote_port = fields[2].split(":")
            sockets.append(
                Socket(
                    local_port=int(local_port, 16),
                    remote_addr=_address(remote),
                    remote_port=int(remote_port, 16),
                    state=fields[3].upper(),
                )
            )
        except ValueError:
            continue
    return sockets


def listening_tcp(sockets: list[Socket]) -> set[int]:
    """Ports of listening TCP sockets."""
    return {s.local_port for s in sockets if s.state == _TCP_LISTEN and s.local_port}


def established_tcp(sockets: list[Socket]) -> list[Socket]:
    """Established TCP connections."""
    return [s for s in sockets if s.state == _TCP_ESTABLISHED and s.remote_port]


def listening_udp(sockets: list[Socket]) -> set[int]:
    """Ports of UDP sockets bound with no peer (what answers datagrams)."""
    return {
        s.local_port
        for s in sockets
        if s.state == _UDP_UNCONNECTED and s.remote_port == 0 and s.local_port
    }
