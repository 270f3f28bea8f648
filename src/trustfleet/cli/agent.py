"""``trustfleet agent …``: the device agent (enrollment now; the MQTT link comes next)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from trustfleet.cli._common import JsonOpt, console, emit_json, now

__all__ = ["app"]

app = typer.Typer(help="Run the device agent.", no_args_is_help=True)

DeviceOpt = Annotated[
    Path, typer.Option("--device", help="Device folder (made by 'trustfleet factory provision').")
]


@app.command("enroll")
def enroll(
    device: DeviceOpt,
    reenroll: Annotated[
        bool, typer.Option("--reenroll", help="Re-enroll with the current LDevID.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Enroll over EST with the identity key in the device token; store the LDevID."""
    from trustfleet.agent.est import enroll_device
    from trustfleet.agent.settings import load_device_settings

    settings = load_device_settings(device)
    outcome = enroll_device(settings, mode="reenroll" if reenroll else "enroll", now=now())
    cert = outcome.certificate
    doc = {
        "device_id": outcome.device_id,
        "serial": format(cert.serial_number, "x"),
        "not_after": cert.not_valid_after_utc.isoformat(),
        "certificate": str(outcome.path),
    }
    if json_out:
        emit_json(doc)
        return
    console.print(
        f"[green]✓[/] {outcome.device_id} enrolled; LDevID valid until {doc['not_after']}"
    )
