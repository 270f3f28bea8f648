"""``trustfleet release …``: Build and publish signed firmware releases."""

from __future__ import annotations

import typer

__all__ = ["app"]

app = typer.Typer(help="Build and publish signed firmware releases.", no_args_is_help=True)
