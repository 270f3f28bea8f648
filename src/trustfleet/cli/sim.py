"""``trustfleet sim …``: Simulated devices, their firmware images, and fleets following a
metrics scenario."""

from __future__ import annotations

import shutil
import tempfile
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


@app.command("fleet")
def fleet(
    scenario: Annotated[
        str, typer.Option("--scenario", help="A scenario file (TOML) or a built-in name.")
    ],
    devices: Annotated[int, typer.Option("--devices", min=4, max=200, help="Fleet size.")] = 4,
    windows: Annotated[
        int, typer.Option("--windows", min=1, max=3600, help="Windows each device reports.")
    ] = 10,
    interval: Annotated[
        int, typer.Option("--interval", min=1, max=3600, help="Report interval (seconds).")
    ] = 1,
    seed: Annotated[int, typer.Option("--seed", help="The scenario's seed.")] = 0,
    workdir: Annotated[
        Path | None, typer.Option("--workdir", help="Where to put it (default: a temporary dir).")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Serve a simulated fleet whose agents' metrics follow a scenario; report what the
    monitor raised."""
    from trustfleet.cli.monitor import scenario_option
    from trustfleet.sim.fleet import SimFleet
    from trustfleet.sim.live import run_scenario_fleet

    scenario_option(scenario)  # refuse a bad one before the fleet is made
    root = workdir or Path(tempfile.mkdtemp(prefix="trustfleet-sim-"))
    sim = SimFleet(root, size=devices)
    try:
        run = run_scenario_fleet(sim, scenario, windows=windows, interval_s=interval, seed=seed)
    finally:
        sim.stop()
        if workdir is None:
            shutil.rmtree(root, ignore_errors=True)
    doc = {"scenario": run.scenario, "devices": run.devices, "windows": run.windows,
           "alerts": run.alerts}  # fmt: skip
    if json_out:
        emit_json(doc)
        return
    console.print(f"{run.devices} devices followed {run.scenario}")
    for device_id, count in run.windows.items():
        kinds = ", ".join(run.alerts.get(device_id, [])) or "no alert"
        console.print(f"  {device_id}: {count} windows, {kinds}")
