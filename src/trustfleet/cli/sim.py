"""``trustfleet sim …``: Simulated devices and their firmware images."""

from __future__ import annotations

import typer

__all__ = ["app"]

app = typer.Typer(help="Simulated devices and their firmware images.", no_args_is_help=True)
