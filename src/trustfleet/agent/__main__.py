"""``python -m trustfleet.agent run --device DIR [--once] [--json]`` (console script
``trustfleet-agent``): the device agent without the operator CLI's framework.

On a device this is the entry point to use: it loads only what the agent needs (no Typer, no
Rich, no server packages), which keeps its resident memory low. ``trustfleet agent run`` does
the same through the full CLI.

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
import signal
import sys
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import NoReturn

from trustfleet.errors import TrustFleetError, exit_code_for

__all__ = ["main", "run"]


def _now() -> datetime:
    return datetime.now(UTC)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line with a hint, as everywhere
        print(f"error: {message}. Hint: run '{self.prog} --help'.", file=sys.stderr)
        sys.exit(2)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="trustfleet-agent", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="enroll if needed, then keep the MQTT link")
    run.add_argument("--device", type=Path, required=True, help="the device folder")
    run.add_argument("--once", action="store_true", help="one round, then exit")
    run.add_argument("--json", action="store_true", help="print one JSON document")
    boot = commands.add_parser("boot", help="run the bootloader once (verified boot)")
    boot.add_argument("--device", type=Path, required=True, help="the device folder")
    boot.add_argument("--json", action="store_true", help="print one JSON document")
    update = commands.add_parser("update", help="update once, through the reboot and commit")
    update.add_argument("--device", type=Path, required=True, help="the device folder")
    update.add_argument("--version", help="the release to install (default: the newest)")
    update.add_argument("--json", action="store_true", help="print one JSON document")
    from trustfleet.agent._tpmhooks import add_commands  # noqa: PLC0415  # attest, ak-enroll

    add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the agent; return the exit code (errors are one line with a hint)."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("trustfleet.agent").setLevel(logging.INFO)
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    try:
        if args.command == "boot":
            return _boot_once(args.device, as_json=args.json)
        if args.command in ("attest", "ak-enroll"):  # child processes of the agent (TPM)
            from trustfleet.agent._tpmhooks import run_command  # noqa: PLC0415

            return run_command(args, now=_now)
        if args.command == "update":
            from trustfleet.agent._bootloop import update_once  # noqa: PLC0415

            return update_once(args.device, version=args.version, as_json=args.json, stop=stop,
                               now=_now)  # fmt: skip
        return _run(args, stop=stop, argv=list(sys.argv[1:] if argv is None else argv))
    except TrustFleetError as exc:
        print(f"error: {exc.one_line()}", file=sys.stderr)
        return exit_code_for(exc)


def _run(args: argparse.Namespace, *, stop: threading.Event, argv: list[str]) -> int:
    from trustfleet.agent._bootloop import boot_in_child, on_trial, reexec  # noqa: PLC0415
    from trustfleet.agent._tpmhooks import power_off, power_on  # noqa: PLC0415
    from trustfleet.agent.platform.devfolder import LOCK_ENV, hold_device  # noqa: PLC0415
    from trustfleet.agent.runner import RunSummary, run_agent  # noqa: PLC0415  # after argparse
    from trustfleet.agent.settings import load_device_settings  # noqa: PLC0415
    from trustfleet.agent.updater.worker import REBOOT_EXIT_CODE  # noqa: PLC0415

    summaries: list[RunSummary] = []
    settings = load_device_settings(args.device)
    lock = hold_device(settings.directory)  # before the TPM: one agent per device folder
    power_on(settings.directory)  # a boot resets the TPM (no-op for a device without one)
    booted = boot_in_child(settings.directory)
    try:
        code = run_agent(settings, once=args.once, stop=stop, now=_now,
                         on_summary=summaries.append, boot=booted)  # fmt: skip
    except TrustFleetError as exc:
        if booted is None or not on_trial(settings.directory):
            raise
        print(f"error: {exc.one_line()} (new slot on trial: rebooting)", file=sys.stderr)
        code = REBOOT_EXIT_CODE
    if code == REBOOT_EXIT_CODE and not stop.is_set():
        lock.keep_across_exec(LOCK_ENV)  # the rebooted agent holds it without a gap
        reexec(argv)
    power_off(settings.directory)  # a clean shutdown: TPM2_Shutdown, swtpm stopped
    if args.json and summaries:
        print(json.dumps(dataclasses.asdict(summaries[0]), indent=2, sort_keys=True, default=str))
    return 0 if code == REBOOT_EXIT_CODE else code


def _boot_once(device: Path, *, as_json: bool) -> int:
    from trustfleet.agent._bootloop import boot_in_process  # noqa: PLC0415

    result = boot_in_process(device)
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
