"""The ``trustfleet`` command."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

import typer
from pydantic import ValidationError
from rich.markup import escape

# Typer bundles Click privately; its usage errors are caught here to print one line.
from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError

from trustfleet import product_version
from trustfleet.audit.context import event_context
from trustfleet.cli import (
    agent,
    alerts,
    attest,
    audit,
    ca,
    campaign,
    device,
    factory,
    monitor,
    ota,
    release,
    server,
    sim,
    token,
    user,
    witness,
)
from trustfleet.cli._argv import normalise_flags, tidy_help
from trustfleet.cli._common import ACTOR, INTERRUPTED_EXIT_CODE, Interrupted, cli_origin, stderr
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
app.add_typer(ca.app, name="ca")
app.add_typer(release.app, name="release")
app.add_typer(campaign.app, name="campaign")
app.add_typer(attest.app, name="attest")
app.add_typer(audit.app, name="audit")
app.add_typer(sim.app, name="sim")
app.add_typer(witness.app, name="witness")
app.add_typer(user.app, name="user")
app.add_typer(token.app, name="token")
app.add_typer(monitor.app, name="monitor")
app.add_typer(alerts.app, name="alerts")
app.command("demo")(demo)


def _show_version(value: bool) -> None:
    if value:
        print(f"trustfleet {product_version()}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(
        False,
        "--version",
        is_eager=True,
        callback=_show_version,
        help="Print the version and exit.",
    ),
) -> None:
    """TrustFleet: identity, updates, attestation and revocation for fleets of IoT devices."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit code. Errors are one line with a hint, never a traceback."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    command = tidy_help(typer.main.get_command(app))
    try:
        args = normalise_flags(command, list(argv) if argv is not None else sys.argv[1:])
        with event_context(origin=cli_origin(), operator=ACTOR):  # who and where, in the audit log
            result = command.main(args=args, prog_name="trustfleet", standalone_mode=False)
    except NoArgsIsHelpError as exc:
        print(exc.ctx.get_help() if exc.ctx else "")
        return 2
    except _FAILURES as exc:
        return _report(exc)
    return result if isinstance(result, int) else 0


_FAILURES = (
    ClickException, TrustFleetError, Interrupted, KeyboardInterrupt, typer.Abort, OSError,
    ValidationError,
)  # fmt: skip


def _report(exc: BaseException) -> int:
    """Print one line for a failure that reached the top; its exit code."""
    line, code = _describe(exc)
    _error(line)
    return code


def _describe(exc: BaseException) -> tuple[str, int]:
    if isinstance(exc, ClickException):
        return _click_failure(exc)
    if isinstance(exc, TrustFleetError):
        return exc.one_line(), exit_code_for(exc)
    if isinstance(exc, Interrupted):
        return f"interrupted (Ctrl-C): {exc.done.rstrip('.')}.", INTERRUPTED_EXIT_CODE
    if isinstance(exc, OSError):
        return _os_failure(exc), 1
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or exc.title
        return f"invalid value for {where}: {first['msg']}. Hint: see '--help' for the range.", 2
    line = (
        "interrupted (Ctrl-C) before the command finished. Hint: check what it changed (a "
        "'list' or 'status' command) before running it again."
    )
    return line, INTERRUPTED_EXIT_CODE


def _click_failure(exc: ClickException) -> tuple[str, int]:
    message = " ".join(exc.format_message().split()).rstrip(".")
    if isinstance(exc, UsageError):
        where = exc.ctx.command_path if exc.ctx else "trustfleet"
        return f"{message}. Hint: run '{where} --help'.", 2
    return f"{message}.", exc.exit_code


def _os_failure(exc: OSError) -> str:
    """A file-system error that reached the top, as one line naming the path."""
    what = exc.strerror or type(exc).__name__
    where = f" {exc.filename}" if exc.filename else ""
    hints = {
        NotADirectoryError: "a directory was expected; check the path",
        IsADirectoryError: "a file was expected; check the path",
        PermissionError: "check the path and its permissions",
        FileExistsError: "choose a new path",
        FileNotFoundError: "check the path: its parent must be a directory you can write in",
    }
    hint = next((h for cls, h in hints.items() if isinstance(exc, cls)), "check the path")
    return f"cannot use{where}: {what}. Hint: {hint}."


def _error(line: str) -> None:
    stderr.print(f"[bold red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
