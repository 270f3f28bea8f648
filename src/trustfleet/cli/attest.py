"""``trustfleet attest …``: Remote attestation: challenge devices and read verdicts."""

from __future__ import annotations

import typer

__all__ = ["app"]

app = typer.Typer(
    help="Remote attestation: challenge devices and read verdicts.", no_args_is_help=True
)
