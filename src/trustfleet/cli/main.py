"""The ``trustfleet`` command."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

import click
import typer

from trustfleet.cli import device, factory, server
from trustfleet.cli._common import stderr
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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit code. Errors are one line with a hint, never a traceback."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    command = typer.main.get_command(app)
    try:
        command.main(args=list(argv) if argv is not None else None, prog_name="trustfleet", standalone_mode=False)
    except TrustFleetError as exc:
        stderr.print(f"[bold red]error:[/] {exc.one_line()}", highlight=False, markup=True, soft_wrap=True)
        return exit_code_for(exc)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.ClickException as exc:
        stderr.print(f"[bold red]error:[/] {exc.format_message()} Hint: see '--help'.", highlight=False, soft_wrap=True)
        return exc.exit_code
    except click.exceptions.Abort:
        stderr.print("aborted")
        return 130
    except KeyboardInterrupt:
        return 130
    return 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
