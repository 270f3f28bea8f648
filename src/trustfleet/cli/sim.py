"""``trustfleet sim …``: Simulated devices and their firmware images."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from trustfleet.cli._common import JsonOpt, console, emit_json

__all__ = ["app"]

app = typer.Typer(help="Simulated devices and their firmware images.", no_args_is_help=True)


@app.command("image")
def image(
    version: Annotated[str, typer.Option("--version", help="Release version, e.g. 1.0.1.")],
    out: Annotated[Path, typer.Option("--out", help="Image file to write.")],
    size: Annotated[
        str, typer.Option("--size", help="Image size: bytes or 4MiB, 64MiB, ...")
    ] = "64MiB",
    seed: Annotated[
        str,
        typer.Option(
            "--seed",
            help="Lineage: images of one seed (and size) are successive versions of one product.",
        ),
    ] = "sim-v1",
    json_out: JsonOpt = False,
) -> None:
    """Write a deterministic simulated firmware image of a version (for OTA tests and demos)."""
    from trustfleet.sim.image import build_image, parse_size

    info = build_image(out, version=version, size_bytes=parse_size(size), seed=seed)
    doc = {
        "path": str(info.path),
        "version": info.version,
        "seed": info.seed,
        "length": info.length,
        "sha256": info.sha256,
        "files": info.files,
    }
    if json_out:
        emit_json(doc)
        return
    console.print(f"{info.path}: version {info.version} ({info.files} files), {info.length} bytes")
    console.print(f"sha256 {info.sha256}")
