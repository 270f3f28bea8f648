"""Device CA rollover under load: time to move a fleet to a new device CA, telemetry lost.

Serves a real fleet (`trustfleet server run`: HTTPS, Mosquitto, ingest) on free loopback ports
with N real agents (`python -m trustfleet.agent.simulated`, each with its SoftHSM2 token)
publishing telemetry every second, then rolls the device CA over through the CLI as an operator
would: `ca rollover start` (a ceremony with the custodians' PIN files), `ca rollover activate`,
`server rotate-tls`, `reenroll` to every device by command (answers awaited), `ca rollover
retire`. Prints each step's time, the whole move, and the telemetry lost (what each stopped
agent says it published minus what the store holds). The harness is trustfleet.sim.rollover,
shared with tests/integration/lifecycle/test_rollover.py.

    .venv/bin/python benchmarks/rollover.py [--devices 20] [--json] [--keep]
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from _procs import benchmark_parser
from rich.console import Console
from rich.table import Table

from trustfleet.sim.rollover import move_fleet, served_fleet, telemetry_lost

MAX_DEVICES = 200
AFTER_ROWS = 3  # telemetry rows each device adds after the retirement, before the count
WAIT_S = 180.0
console = Console(stderr=True)


def run(devices: int, *, work: Path) -> dict[str, Any]:
    """Serve, move, count; the figures."""
    started = time.monotonic()
    fleet = served_fleet(work, devices=devices)
    try:
        setup_s = round(time.monotonic() - started, 1)
        console.print(f"{devices} agents enrolled and publishing after {setup_s} s")
        move = move_fleet(fleet, fleet.device_ids, force_retire=False)
        since = fleet.telemetry_counts()
        fleet.wait_telemetry(fleet.device_ids, rows=AFTER_ROWS, since=since, timeout_s=WAIT_S)
        for agent in fleet.agents.values():
            agent.stop()
        lost = telemetry_lost(fleet, fleet.device_ids)
        stored = sum(fleet.telemetry_counts().values())
    finally:
        fleet.stop()
    return {
        "devices": devices,
        "setup_s": setup_s,
        "ca": move.ca,
        "steps_s": move.steps_s,
        "move_s": move.move_s,
        "telemetry_stored": stored,
        "telemetry_lost": sum(lost.values()),
        "retired": move.retired,
        "move": asdict(move),
    }


def main() -> int:
    parser = benchmark_parser(__doc__, keep=True)
    parser.add_argument("--devices", type=int, default=20, help="agents (default 20)")
    args = parser.parse_args()
    if not 1 <= args.devices <= MAX_DEVICES:
        parser.error(f"--devices must be 1..{MAX_DEVICES}")
    work = Path(tempfile.mkdtemp(prefix="tf-rollover-"))
    try:
        result = run(args.devices, work=work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(result, indent=2, default=str))
        return 0
    table = Table("step", "seconds", title=f"device CA rollover, {args.devices} devices")
    for name, seconds in result["steps_s"].items():
        table.add_row(name, f"{seconds:.2f}")
    table.add_row("whole move", f"{result['move_s']:.2f}")
    table.add_row("telemetry stored / lost", f"{result['telemetry_stored']} / "
                  f"{result['telemetry_lost']}")  # fmt: skip
    Console().print(table)
    return 0 if result["telemetry_lost"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
