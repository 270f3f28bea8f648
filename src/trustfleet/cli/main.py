"""The ``trustfleet`` command."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

import typer

from trustfleet.cli import agent, device, factory, server
from trustfleet.cli._common import stderr
from trustfleet.cli.demo import demo
from trustfleet.errors import TrustFleetError, exit_code_for

__all__ = ["app", "main", "run"]

app = typer.Typer(
    name="trustfleet",
    help="TrustFleet: identity, enrollment and revocation for fleets of IoT devices.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(server.app, name="server")
app.add_typer(factory.app, name="factory")
app.add_typer(device.app, name="device")
app.add_typer(agent.app, name="agent")
app.command("demo")(demo)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit code. Errors are one line with a hint, never a traceback."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    command = typer.main.get_command(app)
    args = list(argv) if argv is not None else sys.argv[1:]
    try:
        command.main(args=args, prog_name="trustfleet", standalone_mode=True)
    except SystemExit as exc:  # click's own usage errors (exit 2) and normal exits
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except TrustFleetError as exc:
        stderr.print(f"[bold red]error:[/] {exc.one_line()}", highlight=False, soft_wrap=True)
        return exit_code_for(exc)
    except KeyboardInterrupt:
        return 130
    return 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
