"""What the agent says on the wire (docs/mqtt.md): payloads, commands, simulated metrics."""

from __future__ import annotations

import json
import math
import secrets
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = [
    "Command",
    "new_boot_id",
    "parse_command",
    "read_rss_kb",
    "render",
    "simulated_metrics",
]

_MAX_COMMAND_ID_CHARS = 128
_COMMAND_NAME_CHARS = 64


@dataclass(frozen=True)
class Command:
    """A command from the fleet service: ``{"id", "name", "args"}``."""

    id: str
    name: str
    args: dict[str, Any]


def parse_command(raw: bytes, *, max_bytes: int) -> Command | str:
    """Parse a command payload; the command, or why it was refused (a short reason).

    A refused payload without a usable ``id`` cannot be answered; the caller logs it.
    """
    if len(raw) > max_bytes:
        return f"payload larger than {max_bytes} bytes"
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return "payload is not UTF-8 JSON"
    if not isinstance(doc, dict):
        return "payload is not a JSON object"
    cid, name, args = doc.get("id"), doc.get("name"), doc.get("args", {})
    problem = ""
    if not isinstance(cid, str) or not 0 < len(cid) <= _MAX_COMMAND_ID_CHARS:
        problem = "'id' must be a non-empty string"
    elif not isinstance(name, str) or not 0 < len(name) <= _COMMAND_NAME_CHARS:
        problem = "'name' must be a non-empty string"
    elif not isinstance(args, dict):
        problem = "'args' must be an object"
    return problem or Command(id=str(cid), name=str(name), args=args)


def new_boot_id() -> str:
    """A random id for this start of the agent (docs/mqtt.md: ``boot``)."""
    return secrets.token_hex(8)


def render(
    document: dict[str, Any], *, seq: int, now: datetime, max_bytes: int, boot: str | None = None
) -> bytes:
    """The UTF-8 JSON payload ``{"ts", "seq", "boot", **document}``.

    ``(device, boot, seq)`` names a message: the service stores it at most once.

    Raises:
        ValueError: The payload would be larger than ``max_bytes``.
    """
    ts = now.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    head: dict[str, Any] = (
        {"ts": ts, "seq": seq} if boot is None else {"ts": ts, "seq": seq, "boot": boot}
    )
    payload = json.dumps({**head, **document}, separators=(",", ":")).encode()
    if len(payload) > max_bytes:
        raise ValueError(f"payload of {len(payload)} bytes exceeds {max_bytes}")
    return payload


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
