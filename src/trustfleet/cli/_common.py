"""What every command group shares: the home option, JSON output, the clock."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from trustfleet.errors import NotFound

__all__ = ["HomeOpt", "JsonOpt", "console", "emit_json", "hint_for_missing", "now", "stderr"]

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


def now() -> datetime:
    """The current time, UTC."""
    return datetime.now(UTC)


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
