"""The ``trustfleet`` command."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

import typer
from rich.markup import escape

# Typer bundles Click privately; its usage errors are caught here to print one line.
from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError

from trustfleet.cli import agent, attest, campaign, device, factory, ota, release, server, sim
from trustfleet.cli._common import stderr
from trustfleet.cli.demo import demo
from trustfleet.errors import TrustFleetError, exit_code_for

__all__ = ["app", "main", "run"]

app = typer.Typer(
    name="trustfleet",
    help="TrustFleet: identity, updates, attestation and revocation for fleets of IoT devices.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(server.app, name="server")
app.add_typer(factory.app, name="factory")
app.add_typer(device.app, name="device")
app.add_typer(agent.app, name="agent")
app.add_typer(ota.app, name="ota")
app.add_typer(release.app, name="release")
app.add_typer(campaign.app, name="campaign")
app.add_typer(attest.app, name="attest")
app.add_typer(sim.app, name="sim")
app.command("demo")(demo)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit code. Errors are one line with a hint, never a traceback."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    command = typer.main.get_command(app)
    args = list(argv) if argv is not None else sys.argv[1:]
    try:
        result = command.main(args=args, prog_name="trustfleet", standalone_mode=False)
    except NoArgsIsHelpError as exc:
        print(exc.ctx.get_help() if exc.ctx else "")
        return 2
    except UsageError as exc:
        where = exc.ctx.command_path if exc.ctx else "trustfleet"
        message = " ".join(exc.format_message().split()).rstrip(".")
        _error(f"{message}. Hint: run '{where} --help'.")
        return 2
    except ClickException as exc:
        _error(" ".join(exc.format_message().split()))
        return exc.exit_code
    except TrustFleetError as exc:
        _error(exc.one_line())
        return exit_code_for(exc)
    except (KeyboardInterrupt, typer.Abort):
        return 130
    return result if isinstance(result, int) else 0


def _error(line: str) -> None:
    stderr.print(f"[bold red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
