"""What every command group shares: the home option, JSON output, the clock, interrupts."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from trustfleet.errors import NotFound

__all__ = [
    "INTERRUPTED_EXIT_CODE",
    "HomeOpt",
    "Interrupted",
    "JsonOpt",
    "console",
    "emit_json",
    "hint_for_missing",
    "interruptible",
    "now",
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


class Interrupted(Exception):  # a signal, not an error of the product
    """Ctrl-C stopped a command; ``done`` says what it had done by then (one sentence)."""

    def __init__(self, done: str) -> None:
        super().__init__(done)
        self.done = done


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
