"""What the agent says on the wire (docs/mqtt.md): payloads, commands, simulated metrics."""

from __future__ import annotations

import math
import secrets
import zlib
from pathlib import Path

from trustfleet.wire import Command
from trustfleet.wire import decode_command as parse_command
from trustfleet.wire import encode_device_message as render

__all__ = [
    "Command",
    "new_boot_id",
    "parse_command",
    "read_rss_kb",
    "render",
    "simulated_metrics",
]


def new_boot_id() -> str:
    """A random id for this start of the agent (docs/mqtt.md: ``boot``)."""
    return secrets.token_hex(8)


def simulated_metrics(device_id: str, *, tick: int, uptime_s: float) -> dict[str, float]:
    """Cheap, deterministic readings of a virtual device (a slow wave per device).

    ``mem_rss_kb`` is the agent's real resident memory; the rest is simulated.
    """
    phase = (zlib.crc32(device_id.encode()) % 628) / 100.0
    wave = math.sin(tick / 6.0 + phase)
    return {
        "cpu_pct": round(25.0 + 15.0 * wave, 2),
        "mem_rss_kb": float(read_rss_kb()),
        "temperature_c": round(45.0 + 8.0 * math.sin(tick / 20.0 + phase), 2),
        "uptime_s": round(uptime_s, 1),
    }


def read_rss_kb(status: Path = Path("/proc/self/status")) -> int:
    """This process's resident set size (``VmRSS``) in KiB; 0 where /proc is not available."""
    try:
        for line in status.read_text(encoding="ascii").splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return 0
    return 0
