"""The options and arguments several command groups take (typed with ``Annotated``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Final

import typer

__all__ = ["MAX_PAGE_ROWS", "CursorOpt", "DeviceArg", "HomeOpt", "JsonOpt", "LimitOpt"]

HomeOpt = Annotated[
    Path,
    typer.Option(
        "--home",
        help="Server home directory (made by 'trustfleet server init').",
        envvar="TRUSTFLEET_HOME",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document instead of tables.")]
DeviceArg = Annotated[str, typer.Argument(help="Device id.")]

MAX_PAGE_ROWS: Final = 1000
"""Most rows one page of a list shows (the store's largest page)."""
LimitOpt = Annotated[
    int, typer.Option("--limit", min=1, max=MAX_PAGE_ROWS, help="Most rows on this page.")
]
CursorOpt = Annotated[
    str | None,
    typer.Option("--cursor", help="Show the page after a previous one (its next_cursor)."),
]
