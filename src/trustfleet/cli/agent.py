"""``trustfleet agent …``: the device agent (EST enrollment, the MQTT link)."""

from __future__ import annotations

import dataclasses
import logging
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from trustfleet.cli._common import Interrupted, JsonOpt, console, emit_json, now

__all__ = ["app"]

if TYPE_CHECKING:
    from trustfleet.agent._bootloop import AgentEntry

app = typer.Typer(help="Run the device agent.", no_args_is_help=True)

DeviceOpt = Annotated[
    Path, typer.Option("--device", help="Device folder (made by 'trustfleet factory provision').")
]
SimOpt = Annotated[
    bool,
    typer.Option(
        "--sim",
        help="A simulated device: inject the faults of --faults and of the device folder's "
        "faults.json (tests and the demo; never on a real device).",
    ),
]
FaultsOpt = Annotated[
    str | None,
    typer.Option(
        "--faults",
        help="With --sim: updater faults, e.g. installing:error or write:kill@4096.",
    ),
]


def _entry(device: Path, *, sim: bool, faults: str | None) -> AgentEntry:
    """The device's entry point, or with ``--sim`` the simulation's and its faults."""
    from trustfleet.agent._bootloop import DEVICE_ENTRY, SIMULATED_MODULE, AgentEntry
    from trustfleet.agent.platform.faults import Faults
    from trustfleet.errors import InvalidInput

    if not sim:
        if faults is not None:
            raise InvalidInput("--faults needs --sim", hint="add --sim (simulated devices only)")
        return DEVICE_ENTRY
    return AgentEntry(module=SIMULATED_MODULE, faults=Faults.for_simulation(device, spec=faults))


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


@app.command("run")
def run(
    device: DeviceOpt,
    once: Annotated[
        bool,
        typer.Option(
            "--once",
            help="Enroll if needed, publish one telemetry message and one heartbeat, wait for "
            "their acknowledgements, answer pending commands, then exit.",
        ),
    ] = False,
    sim: SimOpt = False,
    faults: FaultsOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Run the agent: enroll if needed, then keep the MQTT link (SIGTERM/SIGINT stop it).

    A device with a boot chain boots first (verified boot); when an update asks for a reboot
    the process re-executes itself as ``trustfleet-agent run`` and boots again (the same boot
    loop as ``trustfleet-agent run``).
    """
    from trustfleet.agent._bootloop import run_boot_loop, stop_on_signals

    logging.getLogger("trustfleet.agent").setLevel(logging.INFO)
    entry = _entry(device, sim=sim, faults=faults)
    with stop_on_signals() as stop:
        outcome = run_boot_loop(
            device, once=once, as_json=json_out, stop=stop.event, now=now, entry=entry
        )
    done = outcome.summary
    if signal.SIGINT in stop.received:
        raise Interrupted(_what_was_done(done))
    if json_out and done is not None:
        emit_json(dataclasses.asdict(done))
    elif once and done is not None:
        console.print(
            f"[green]✓[/] {done.device_id}: {sum(done.published.values())} message(s) "
            f"published, {done.acked} acknowledged"
        )
    if outcome.code:
        raise typer.Exit(outcome.code)


@app.command("update")
def update(
    device: DeviceOpt,
    version: Annotated[
        str | None, typer.Option("--version", help="Release to install (default: the newest).")
    ] = None,
    sim: SimOpt = False,
    faults: FaultsOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Update once: download (TUF), install into the inactive slot, reboot, health check, commit.

    Exits 0 when committed or up to date, 10 refused, 11 failed, 12 rolled back.
    """
    from trustfleet.agent._bootloop import update_once
    from trustfleet.ota.versions import parse_version

    if version is not None:
        parse_version(version)
    logging.getLogger("trustfleet.agent").setLevel(logging.INFO)
    entry = _entry(device, sim=sim, faults=faults)
    stop = threading.Event()
    code = update_once(
        device, version=version, as_json=json_out, stop=stop, now=now, faults=entry.faults
    )
    if code:
        raise typer.Exit(code)


def _what_was_done(done: Any) -> str:
    """One sentence on what an agent stopped by Ctrl-C did (the TPM was shut down cleanly)."""
    if done is None:
        return "the agent stopped before it connected; its TPM was shut down cleanly"
    enrolled = "enrolled, " if done.enrolled else ""
    return (
        f"the agent of {done.device_id} stopped cleanly ({enrolled}"
        f"{sum(done.published.values())} message(s) published, {done.acked} acknowledged, "
        f"{done.queue_depth} queued for the next run)"
    )
