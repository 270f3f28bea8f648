"""Bounds of the HTTPS front end: per connection (:class:`ConnectionLimits`) and per worker.

A :class:`ConnectionGate` is shared by every connection of one worker process. It admits a new
TCP connection only while the worker holds fewer than ``max_connections`` and its source
address fewer than ``max_connections_per_source``; any other is closed at once (before the TLS
handshake costs anything) and counted. The counts live in the worker's memory only: they are
limits, not state another process needs.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections import Counter
from dataclasses import dataclass

from trustfleet.configfile.options import options_of
from trustfleet.settings import ApiSettings

__all__ = ["ConnectionGate", "ConnectionLimits", "limits_from_settings", "source_key"]

logger = logging.getLogger(__name__)

_REPORT_EVERY_S = 10.0  # at most one warning per this long about refused connections


@dataclass(frozen=True)
class ConnectionLimits:
    """Bounds on what one connection may send, how long it may take, and how many there are.

    Attributes:
        max_header_bytes: Request line and headers.
        max_body_bytes: One request body.
        handshake_timeout_s: Deadline for the whole TLS handshake from the TCP accept.
        idle_timeout_s: How long a connection may wait, idle, for its next request; also how
            long a response may wait for the client to take more of it.
        request_timeout_s: Deadline for a whole request (line, headers and body) from its
            first byte. It is never extended by more bytes arriving.
        max_requests_per_connection: Keep-alive requests before the connection is closed.
        max_connections: Open connections per worker process.
        max_connections_per_source: Open connections per client address per worker process.
        write_buffer_bytes: Bytes queued for the client past which a response waits.
    """

    max_header_bytes: int = 16 * 1024
    max_body_bytes: int = 1024 * 1024
    handshake_timeout_s: float = 10.0
    idle_timeout_s: float = 30.0
    request_timeout_s: float = 20.0
    max_requests_per_connection: int = 1000
    max_connections: int = 1024
    max_connections_per_source: int = 64
    write_buffer_bytes: int = 256 * 1024


def source_key(address: str) -> str:
    """What the per-source caps count by: an IPv4 address, or the /64 of an IPv6 one.

    One IPv6 subscriber usually holds a whole /64, so counting single addresses would let one
    client open a connection from each of 2**64 of them.
    """
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def limits_from_settings(api: ApiSettings) -> ConnectionLimits:
    """The connection limits of the ``[api]`` section (``max_requests_per_connection`` is fixed)."""
    return options_of(ConnectionLimits, api)


class ConnectionGate:
    """Counts a worker's open connections, in total and per source address.

    Not thread-safe: it is used from the worker's event loop only.
    """

    def __init__(self, limits: ConnectionLimits) -> None:
        self._limits = limits
        self._open: Counter[str] = Counter()
        self._total = 0
        self.refused_total = 0
        self.refused_per_source = 0
        self._reported_at = 0.0
        self._reported = 0

    @property
    def open_connections(self) -> int:
        """Connections admitted and not yet closed."""
        return self._total

    def admit(self, source: str) -> bool:
        """Count a new connection from ``source``; False (and counted) if it is over a cap."""
        if self._total >= self._limits.max_connections:
            self.refused_total += 1
            self._report()
            return False
        if self._open[source] >= self._limits.max_connections_per_source:
            self.refused_per_source += 1
            self._report()
            return False
        self._open[source] += 1
        self._total += 1
        return True

    def release(self, source: str) -> None:
        """Forget one admitted connection from ``source``."""
        self._total -= 1
        self._open[source] -= 1
        if self._open[source] <= 0:
            del self._open[source]

    def _report(self) -> None:
        now = time.monotonic()
        refused = self.refused_total + self.refused_per_source
        if now - self._reported_at >= _REPORT_EVERY_S:
            logger.warning(
                "connections refused over the caps: %d since the last report "
                "(%d over the worker cap of %d, %d over the per-source cap of %d in all)",
                refused - self._reported,
                self.refused_total,
                self._limits.max_connections,
                self.refused_per_source,
                self._limits.max_connections_per_source,
            )
            self._reported_at, self._reported = now, refused
