"""What every command group shares: the runtime, JSON output, pages, the clock, interrupts.

A command parses its options, opens the runtime with :func:`command_runtime`, calls one
service function and presents what it returns (:func:`present_page` for lists).
"""

from __future__ import annotations

import json
import os
import pwd
import socket
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from rich.console import Console
from rich.table import Table

from trustfleet.cli._options import HomeOpt, JsonOpt  # the home and --json, shared by all
from trustfleet.errors import NotFound, TrustFleetError

if TYPE_CHECKING:
    from trustfleet.services.runtime import Runtime

__all__ = [
    "ACTOR",
    "DEVICE_LIST_HINT",
    "INTERRUPTED_EXIT_CODE",
    "HomeOpt",
    "Interrupted",
    "JsonOpt",
    "cli_origin",
    "command_runtime",
    "console",
    "device_runtime",
    "emit_json",
    "hint_for_missing",
    "interruptible",
    "now",
    "present_done",
    "present_page",
    "stderr",
]

INTERRUPTED_EXIT_CODE = 130
"""Exit code of a command stopped by Ctrl-C (SIGINT), as shells report 128 + 2."""

console = Console()
stderr = Console(stderr=True)


def _login() -> str:
    try:
        name = pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        name = f"uid{os.geteuid()}"
    return os.environ.get("SUDO_USER") or name


def cli_origin() -> str:
    """Where an operator command comes from, for the audit log: host, process, uid, tty, sudo."""
    parts = [f"cli host={socket.gethostname()}", f"pid={os.getpid()}", f"uid={os.geteuid()}"]
    if os.environ.get("SUDO_USER"):
        parts.append(f"sudo_user={os.environ['SUDO_USER']}")
    if sys.stdin.isatty():
        parts.append(f"tty={os.ttyname(sys.stdin.fileno())}")
    return " ".join(parts)


ACTOR: Final = f"operator:{_login()}@{socket.gethostname()}"[:128]
"""Who the security log says acted, for commands of the operator CLI: the login (the one that
ran sudo, if any) at this host."""
DEVICE_LIST_HINT: Final = "see the known devices with 'trustfleet device list --home DIR'"


class Interrupted(Exception):  # a signal, not an error of the product
    """Ctrl-C stopped a command; ``done`` says what it had done by then (one sentence)."""

    def __init__(self, done: str) -> None:
        super().__init__(done)
        self.done = done


@contextmanager
def command_runtime(home: Path) -> Iterator[Runtime]:
    """The runtime of a server home for one command, closed when the command ends.

    Raises:
        Config: The home or its settings are missing or invalid.
    """
    from trustfleet.services.runtime import Runtime  # keeps --help fast
    from trustfleet.services.upgrade import upgrade_store
    from trustfleet.settings import load_server_settings

    settings = load_server_settings(home)
    upgrade_store(settings, now=now())  # a newer version migrates the store, a copy first
    rt = Runtime.open(settings)
    try:
        yield rt
    except TrustFleetError as exc:  # a refused operator action is in the audit log too
        from trustfleet.services.audit import record_refused_command

        record_refused_command(rt, command=_command_words(), error=exc, now=now())
        raise
    finally:
        rt.close()


def _command_words() -> str:
    """The running command's words (``device revoke``), from Click's context."""
    from typer._click.globals import get_current_context  # Typer's own Click, as main.py

    ctx = get_current_context(silent=True)
    return ctx.command_path.removeprefix("trustfleet").strip() if ctx is not None else ""


@contextmanager
def device_runtime(home: Path) -> Iterator[Runtime]:
    """:func:`command_runtime` for a command on one device: "not found" hints at the list."""
    with command_runtime(home) as rt, hint_for_missing(DEVICE_LIST_HINT):
        yield rt


def present_done(document: Mapping[str, Any], *, json_out: bool, line: str) -> None:
    """Print what a command did: ``document`` as JSON, or ``✓ line``."""
    if json_out:
        emit_json(document)
    else:
        console.print(f"[green]✓[/] {line}")


def present_page(
    key: str,
    rows: Sequence[Mapping[str, Any]],
    *,
    next_cursor: str | None,
    json_out: bool,
    table: Table,
    cells: Callable[[Mapping[str, Any]], Sequence[str]],
) -> None:
    """Print one page of a list: ``{key: rows, "next_cursor": …}`` or a table and a hint."""
    if json_out:
        emit_json({key: list(rows), "next_cursor": next_cursor})
        return
    for row in rows:
        table.add_row(*cells(row))
    console.print(table)
    if next_cursor is not None:
        console.print(f"more {key} exist: show them with --cursor {next_cursor}")


def now() -> datetime:
    """The current time, UTC."""
    return datetime.now(UTC)


@contextmanager
def interruptible(done: Callable[[], str]) -> Iterator[None]:
    """Turn Ctrl-C inside the block into :class:`Interrupted` saying what ``done()`` reports."""
    try:
        yield
    except KeyboardInterrupt:
        raise Interrupted(done()) from None


@contextmanager
def hint_for_missing(hint: str) -> Iterator[None]:
    """Give a NotFound raised inside the block a hint, if it has none."""
    try:
        yield
    except NotFound as exc:
        if exc.hint is None:
            exc.hint = hint
        raise


def emit_json(document: Any) -> None:
    """Print a JSON document to stdout (no Rich markup)."""
    print(json.dumps(document, indent=2, sort_keys=True, default=str))
