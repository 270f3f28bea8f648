"""``trustfleet agent …``: the device agent (EST enrollment, the MQTT link)."""

from __future__ import annotations

import dataclasses
import logging
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer

from trustfleet.cli._common import Interrupted, JsonOpt, console, emit_json, now

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
    json_out: JsonOpt = False,
) -> None:
    """Run the agent: enroll if needed, then keep the MQTT link (SIGTERM/SIGINT stop it).

    A device with a boot chain boots first (verified boot); when an update asks for a reboot
    the process re-executes itself as ``trustfleet-agent run`` and boots again.
    """
    from trustfleet.agent import boot_in_child, power_off, power_on, reexec
    from trustfleet.agent.platform.devfolder import LOCK_ENV, hold_device
    from trustfleet.agent.runner import RunSummary, run_agent
    from trustfleet.agent.settings import load_device_settings
    from trustfleet.agent.updater.worker import REBOOT_EXIT_CODE

    logging.getLogger("trustfleet.agent").setLevel(logging.INFO)
    settings = load_device_settings(device)
    lock = hold_device(settings.directory)  # before the TPM: one agent per device folder
    stop = threading.Event()
    summaries: list[RunSummary] = []
    received: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        power_on(settings.directory)  # a boot resets the TPM (no-op for a device without one)
        booted = boot_in_child(settings.directory)
        code = run_agent(
            settings, once=once, stop=stop, now=now, on_summary=summaries.append, boot=booted
        )
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if code == REBOOT_EXIT_CODE and not stop.is_set():
        lock.keep_across_exec(LOCK_ENV)  # the rebooted agent holds it without a gap
        reexec(["run", "--device", str(device), *(["--once"] if once else [])])
    power_off(settings.directory)  # a clean shutdown: TPM2_Shutdown, swtpm stopped
    if signal.SIGINT in received:
        raise Interrupted(_what_was_done(summaries))
    if json_out and summaries:
        emit_json(dataclasses.asdict(summaries[0]))
    elif once and summaries:
        done = summaries[0]
        console.print(
            f"[green]✓[/] {done.device_id}: {sum(done.published.values())} message(s) "
            f"published, {done.acked} acknowledged"
        )


@app.command("update")
def update(
    device: DeviceOpt,
    version: Annotated[
        str | None, typer.Option("--version", help="Release to install (default: the newest).")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Update once: download (TUF), install into the inactive slot, reboot, health check, commit.

    Exits 0 when committed or up to date, 10 refused, 11 failed, 12 rolled back.
    """
    from trustfleet.agent import update_once
    from trustfleet.ota.versions import parse_version

    if version is not None:
        parse_version(version)
    logging.getLogger("trustfleet.agent").setLevel(logging.INFO)
    stop = threading.Event()
    code = update_once(device, version=version, as_json=json_out, stop=stop, now=now)
    if code:
        raise typer.Exit(code)


def _what_was_done(summaries: list[Any]) -> str:
    """One sentence on what an agent stopped by Ctrl-C did (the TPM was shut down cleanly)."""
    if not summaries:
        return "the agent stopped before it connected; its TPM was shut down cleanly"
    done = summaries[0]
    enrolled = "enrolled, " if done.enrolled else ""
    return (
        f"the agent of {done.device_id} stopped cleanly ({enrolled}"
        f"{sum(done.published.values())} message(s) published, {done.acked} acknowledged, "
        f"{done.queue_depth} queued for the next run)"
    )
