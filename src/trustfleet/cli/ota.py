"""``trustfleet ota …``: the TUF update repository (ceremonies, rotations, timestamp)."""

from __future__ import annotations

import typer

__all__ = ["app"]

app = typer.Typer(
    help="The TUF update repository: key ceremonies, rotations, timestamp refresh.",
    no_args_is_help=True,
)
