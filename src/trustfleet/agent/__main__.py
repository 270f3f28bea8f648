"""``python -m trustfleet.agent run --device DIR [--once] [--json]`` (console script
``trustfleet-agent``): the device agent without the operator CLI's framework.

On a device this is the entry point to use: it loads only what the agent needs (no Typer, no
Rich, no server packages), which keeps its resident memory low. ``trustfleet agent run`` runs
the same boot loop (:func:`trustfleet.agent._bootloop.run_boot_loop`) through the full CLI.
This entry point never injects a fault; the simulation's (``python -m
trustfleet.agent.simulated``) is this one plus ``--faults`` and the device's ``faults.json``.

With a boot chain (``fuses.json`` and A/B slots) ``run`` is a boot loop: the bootloader (a
child process, so ``cryptography`` never stays in the agent) picks and verifies a slot, the
agent runs, and when the updater asks for a reboot the process re-executes itself and boots
again. ``boot`` runs the bootloader once; ``update`` runs one update through its reboots to
its outcome (exit 0 committed or up to date, 10 refused, 11 failed, 12 rolled back).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn

from trustfleet import product_version
from trustfleet.agent._bootloop import (
    DEVICE_ENTRY,
    SIMULATED_MODULE,
    AgentEntry,
    run_boot_loop,
    stop_on_signals,
)
from trustfleet.agent.platform.faults import OPTION, Faults
from trustfleet.errors import TrustFleetError, exit_code_for

__all__ = ["main", "run"]


def _now() -> datetime:
    return datetime.now(UTC)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line with a hint, as everywhere
        print(f"error: {message}. Hint: run '{self.prog} --help'.", file=sys.stderr)
        sys.exit(2)


def _parser(*, simulated: bool) -> argparse.ArgumentParser:
    prog = f"python -m {SIMULATED_MODULE}" if simulated else "trustfleet-agent"
    parser = _Parser(prog=prog, description=__doc__.split("\n")[0])
    parser.add_argument(
        "--version", action="version", version=f"trustfleet-agent {product_version()}"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="enroll if needed, then keep the MQTT link")
    run.add_argument("--once", action="store_true", help="one round, then exit")
    boot = commands.add_parser("boot", help="run the bootloader once (verified boot)")
    update = commands.add_parser("update", help="update once, through the reboot and commit")
    update.add_argument("--version", help="the release to install (default: the newest)")
    for command in (run, boot, update):
        command.add_argument("--device", type=Path, required=True, help="the device folder")
        command.add_argument("--json", action="store_true", help="print one JSON document")
        if simulated:
            command.add_argument(OPTION, default="", help="updater faults (simulation only)")
    from trustfleet.agent._tpmhooks import add_commands  # noqa: PLC0415  # attest, ak-enroll, wipe

    add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None, *, simulated: bool = False) -> int:
    """Run the agent; return the exit code (errors are one line with a hint).

    Args:
        argv: The arguments (default: the process's).
        simulated: The simulation's entry point: ``--faults`` and ``faults.json`` are read.
    """
    args = _parser(simulated=simulated).parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("trustfleet.agent").setLevel(logging.INFO)
    with stop_on_signals() as stop:
        try:
            return _dispatch(args, entry=_entry(args, simulated=simulated), stop=stop.event)
        except TrustFleetError as exc:
            print(f"error: {exc.one_line()}", file=sys.stderr)
            return exit_code_for(exc)


def _entry(args: argparse.Namespace, *, simulated: bool) -> AgentEntry:
    """The device's entry point, or the simulation's with its faults (the test seam).

    Raises:
        Config: ``--faults`` is malformed.
    """
    if not simulated or not hasattr(args, "faults"):
        return DEVICE_ENTRY
    faults = Faults.for_simulation(args.device, spec=args.faults)
    return AgentEntry(module=SIMULATED_MODULE, faults=faults)


def _dispatch(args: argparse.Namespace, *, entry: AgentEntry, stop: threading.Event) -> int:
    if args.command == "boot":
        return _boot_once(args.device, as_json=args.json, faults=entry.faults)
    if args.command in ("attest", "ak-enroll", "wipe"):  # child processes of the agent
        from trustfleet.agent._tpmhooks import run_command  # noqa: PLC0415

        return run_command(args, now=_now)
    if args.command == "update":
        from trustfleet.agent._bootloop import update_once  # noqa: PLC0415

        return update_once(args.device, version=args.version, as_json=args.json, stop=stop,
                           now=_now, faults=entry.faults)  # fmt: skip
    outcome = run_boot_loop(args.device, once=args.once, as_json=args.json, stop=stop,
                            now=_now, entry=entry)  # fmt: skip
    if args.json and outcome.summary is not None:
        doc = dataclasses.asdict(outcome.summary)
        print(json.dumps(doc, indent=2, sort_keys=True, default=str))
    return outcome.code


def _boot_once(device: Path, *, as_json: bool, faults: Faults) -> int:
    from trustfleet.agent._bootloop import boot_in_process  # noqa: PLC0415

    result = boot_in_process(device, faults=faults)
    if result is None:
        print(f"error: {device} has no boot chain (fuses.json and slots). Hint: provision the "
              "device with a published release", file=sys.stderr)  # fmt: skip
        return 3
    if as_json:
        print(json.dumps(result.to_document(), sort_keys=True))
    else:
        fell = f" (fell back: {result.reason})" if result.fell_back else ""
        print(f"booted slot {result.slot}: release {result.version}{fell}")
    return 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()
