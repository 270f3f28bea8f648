"""``python -m trustfleet.agent run --device DIR [--once] [--json]`` (console script
``trustfleet-agent``): the device agent without the operator CLI's framework.

On a device this is the entry point to use: it loads only what the agent needs (no Typer, no
Rich, no server packages), which keeps its resident memory low. ``trustfleet agent run`` does
the same through the full CLI.
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
        from trustfleet.agent.runner import RunSummary, run_agent  # noqa: PLC0415  # after argparse
        from trustfleet.agent.settings import load_device_settings  # noqa: PLC0415

        summaries: list[RunSummary] = []
        settings = load_device_settings(args.device)
        code = run_agent(settings, once=args.once, stop=stop, now=_now, on_summary=summaries.append)
    except TrustFleetError as exc:
        print(f"error: {exc.one_line()}", file=sys.stderr)
        return exit_code_for(exc)
    if args.json and summaries:
        print(json.dumps(dataclasses.asdict(summaries[0]), indent=2, sort_keys=True, default=str))
    return code


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()
