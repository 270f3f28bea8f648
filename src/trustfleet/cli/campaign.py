"""``trustfleet campaign …``: Roll a release out to the fleet in waves."""

from __future__ import annotations

import typer

__all__ = ["app"]

app = typer.Typer(help="Roll a release out to the fleet in waves.", no_args_is_help=True)
