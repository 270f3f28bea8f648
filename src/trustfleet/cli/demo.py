"""``trustfleet demo``: a fleet is made, enrolls, updates, attests, and loses a revoked member.

Everything is real: SoftHSM2 tokens for the CAs and for each device, the HTTPS service as a
child process on a free loopback port, each device enrolling from a process of its own with its
key in its token (awscrt mTLS), TUF-signed releases installed into A/B slots through the boot
chain, a campaign in waves, an OCSP and CRL check of the revocation, and the audit log: the
story's events in the tree, a checkpoint cosigned by a witness, the revocation's inclusion proof
checked by the independent Go verifier, and an edited row of a copy of the store found.

This module only presents: the fleet and its stages are the harness's
(:mod:`trustfleet.sim.fleet`, :data:`trustfleet.sim.scenarios.DEMO`).
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from trustfleet.cli._common import JsonOpt, console, emit_json, interruptible
from trustfleet.errors import InvalidInput, TrustFleetError

if TYPE_CHECKING:
    from trustfleet.sim.fleet import SimFleet
    from trustfleet.sim.scenarios import StageResult

__all__ = ["demo"]

_DETAILS_CHARS = 200


def demo(
    devices: Annotated[
        int, typer.Option("--devices", min=4, max=200, help="How many virtual devices (4 or more).")
    ] = 10,
    workdir: Annotated[
        Path | None,
        typer.Option("--workdir", help="Where to put everything (default: a temporary dir)."),
    ] = None,
    keep: Annotated[
        bool, typer.Option("--keep", help="Leave the service running and the files in place.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Run the fleet demo end to end; exit 0 only if every stage is ok."""
    from trustfleet.sim.fleet import SimFleet
    from trustfleet.sim.scenarios import DEMO

    _check_workdir(workdir)
    root = workdir or Path(tempfile.mkdtemp(prefix="trustfleet-demo-"))
    fleet = SimFleet(root, size=devices)
    if not json_out:
        fleet.on_progress = _show_progress
    results: list[StageResult] = []
    running: list[str] = []
    try:
        with interruptible(
            lambda: _interrupted_note(fleet, results, running, keep=keep, temp=workdir is None)
        ):
            _run(fleet, results, running, quiet=json_out)
    finally:
        if not keep:
            fleet.stop()
            if workdir is None:
                shutil.rmtree(root, ignore_errors=True)
    ok = len(results) == len(DEMO) and all(r.ok for r in results)
    _report(fleet, results, json_out=json_out, keep=keep, ok=ok)
    raise typer.Exit(0 if ok else 1)


def _check_workdir(workdir: Path | None) -> None:
    if workdir is None or not workdir.exists():
        return
    if not workdir.is_dir():
        raise InvalidInput(f"--workdir {workdir} is a file", hint="give an empty or new directory")
    if any(workdir.iterdir()):
        raise TrustFleetError(f"{workdir} is not empty", hint="give an empty or new --workdir")


def _run(fleet: SimFleet, results: list[StageResult], running: list[str], *, quiet: bool) -> None:
    """Run the stages in order, stopping at the first that fails."""
    from trustfleet.sim.scenarios import DEMO

    for stage in DEMO:
        running[:] = [stage.name]
        if not quiet:
            console.rule(f"[bold]{stage.name}")
        result = stage(fleet)
        results.append(result)
        running.clear()
        if not quiet:
            mark = "[green]✓[/]" if result.ok else "[red]✗[/]"
            shown = json.dumps(dict(result.details), default=str)[:_DETAILS_CHARS]
            console.print(f"{mark} {result.name} ({result.seconds:.1f} s) {shown}", markup=True)
            if not result.ok:
                console.print(f"  [red]{result.reason}[/]")
        if not result.ok:
            return


def _show_progress(what: str, done: int, total: int) -> None:
    console.print(f"  {what}" + (f": {done}/{total}" if total else ""))


def _interrupted_note(
    fleet: SimFleet, results: list[StageResult], running: list[str], *, keep: bool, temp: bool
) -> str:
    """What a demo stopped by Ctrl-C had done, and what is left of it."""
    done = [r.name for r in results if r.ok]
    current = running[0] if running else (results[-1].name if results else None)
    where = f"during stage '{current}'" if current else "before the first stage"
    if keep:
        left = f"service, witness and agents were left running; files in {fleet.workdir}"
    elif temp:
        left = "service, witness and agents were stopped and the temporary files removed"
    else:
        left = f"service, witness and agents were stopped; files left in {fleet.workdir}"
    return f"demo stopped {where} after {len(done)} stage(s) ({', '.join(done) or 'none'}); {left}"


def _processes(fleet: SimFleet) -> dict[str, Any]:
    """The process groups left running (``--keep``): stop each with ``kill -TERM -PID``."""
    server, witness = fleet.server, fleet.witness
    return {
        "server": server.pid if server is not None and server.process is not None else None,
        "witness": witness.pid if witness is not None and witness.process is not None else None,
        "agents": {
            a.device_id: a.process.pid for a in fleet.agents.values() if a.process and a.running
        },
    }


def _report(
    fleet: SimFleet, results: list[StageResult], *, json_out: bool, keep: bool, ok: bool
) -> None:
    from trustfleet.sim.scenarios import console_login

    if json_out:
        doc: dict[str, Any] = {
            "ok": ok,
            "workdir": str(fleet.workdir),
            "stages": [r.to_json() for r in results],
        }
        if keep:
            doc["processes"] = _processes(fleet)
            if ok:
                login = console_login(fleet)
                doc["console"] = {
                    "url": login.url,
                    "login": login.login,
                    "password": login.password,
                }
        emit_json(doc)
        return
    table = Table("stage", "ok", "seconds", title="TrustFleet demo")
    for r in results:
        table.add_row(r.name, "[green]yes[/]" if r.ok else "[red]no[/]", f"{r.seconds:.1f}")
    console.print(table)
    if keep and fleet.server is not None:
        server = fleet.server
        console.print(
            f"service: {server.base_url}  home: {server.home}  devices: {fleet.devices_dir}"
        )
        pids = _processes(fleet)
        leaders = [pids["server"], pids["witness"], *pids["agents"].values()]
        groups = " ".join(f"-{p}" for p in leaders if p)
        console.print(f"stop it with: kill -TERM {groups or '?'}")
        if ok:
            login = console_login(fleet)
            console.print(
                f"console: {login.url}  login: {login.login}  one-time password: {login.password}"
                "  (trust public/root-ca.pem of the home in your browser; the first login asks"
                " for a new password and a TOTP enrollment)",
                soft_wrap=True,
            )


if __name__ == "__main__":
    from trustfleet.cli.main import main

    sys.exit(main(["demo", *sys.argv[1:]]))
