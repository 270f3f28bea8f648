"""What every command group shares: the home option, the runtime, JSON output, pages, the clock.

A command parses its options, opens the runtime with :func:`command_runtime`, calls one
service function and presents what it returns (:func:`present_page` for lists).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final

import typer
from rich.console import Console
from rich.table import Table

from trustfleet.errors import NotFound

if TYPE_CHECKING:
    from trustfleet.services.runtime import Runtime

__all__ = [
    "ACTOR",
    "DEVICE_LIST_HINT",
    "INTERRUPTED_EXIT_CODE",
    "MAX_PAGE_ROWS",
    "CursorOpt",
    "HomeOpt",
    "Interrupted",
    "JsonOpt",
    "LimitOpt",
    "command_runtime",
    "console",
    "emit_json",
    "hint_for_missing",
    "interruptible",
    "now",
    "present_page",
    "stderr",
]

INTERRUPTED_EXIT_CODE = 130
"""Exit code of a command stopped by Ctrl-C (SIGINT), as shells report 128 + 2."""

console = Console()
stderr = Console(stderr=True)

HomeOpt = Annotated[
    Path,
    typer.Option(
        "--home",
        help="Server home directory (made by 'trustfleet server init').",
        envvar="TRUSTFLEET_HOME",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document instead of tables.")]

MAX_PAGE_ROWS: Final = 1000
"""Most rows one page of a list shows (the store's largest page)."""
LimitOpt = Annotated[
    int, typer.Option("--limit", min=1, max=MAX_PAGE_ROWS, help="Most rows on this page.")
]
CursorOpt = Annotated[
    str | None,
    typer.Option("--cursor", help="Show the page after a previous one (its next_cursor)."),
]
ACTOR: Final = "operator:cli"
"""Who the security log says acted, for commands of the operator CLI."""
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
    from trustfleet.settings import load_server_settings

    rt = Runtime.open(load_server_settings(home))
    try:
        yield rt
    finally:
        rt.close()


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
