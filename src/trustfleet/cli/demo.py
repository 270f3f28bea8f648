"""``trustfleet demo``: a fleet is made, enrolls, updates, attests, and loses a revoked member.

Everything is real: SoftHSM2 tokens for the CAs and for each device, the HTTPS service as a
child process on a free loopback port, each device enrolling from a process of its own with its
key in its token (awscrt mTLS), TUF-signed releases installed into A/B slots through the boot
chain, a campaign in waves, and an OCSP and CRL check of the revocation.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from trustfleet.cli._common import JsonOpt, console, emit_json, interruptible, now
from trustfleet.cli._demo_fleet import (
    _AGENT_TIMEOUT_S,
    _IMAGE_BYTES,
    _MODEL,
    _V1,
    _V2,
    _V3,
    Stage,
    _agent,
    _agent_once,
    _attest_run,
    _cli,
    _crl_lists,
    _device_states,
    _firmware,
    _Fleet,
    _free_port,
    _ldevid,
    _ocsp_status,
    _publish,
    _quarantine_of,
    _run_campaign,
    _runtime,
    _start_agent,
    _stop,
    _stop_agent,
    _telemetry_counts,
    _wait_cut_off,
    _wait_healthy,
    _wait_port,
)
from trustfleet.errors import InvalidInput, TrustFleetError

__all__ = ["demo"]


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
    root = workdir or Path(tempfile.mkdtemp(prefix="trustfleet-demo-"))
    if workdir is not None and workdir.exists() and not workdir.is_dir():
        raise InvalidInput(f"--workdir {workdir} is a file", hint="give an empty or new directory")
    if workdir is not None and workdir.exists() and any(workdir.iterdir()):
        raise TrustFleetError(f"{workdir} is not empty", hint="give an empty or new --workdir")
    fleet = _Fleet(
        workdir=root,
        home=root / "server",
        devices_dir=root / "devices",
        port=_free_port(),
        mqtt_port=_free_port(),
    )
    stages: list[Stage] = []
    try:
        with interruptible(
            lambda: _interrupted_note(fleet, stages, keep=keep, temp=workdir is None)
        ):
            _run_stages(fleet, stages, count=devices, quiet=json_out)
    finally:
        if not keep:
            _stop(fleet)
            if workdir is None:
                shutil.rmtree(root, ignore_errors=True)
    ok = bool(stages) and all(s.ok for s in stages)
    _report(fleet, stages, json_out=json_out, keep=keep, ok=ok)
    raise typer.Exit(0 if ok else 1)


def _interrupted_note(fleet: _Fleet, stages: list[Stage], *, keep: bool, temp: bool) -> str:
    """What a demo stopped by Ctrl-C had done, and what is left of it."""
    done = [s.name for s in stages if s.ok]
    where = f"during stage '{stages[-1].name}'" if stages else "before the first stage"
    if keep:
        left = f"the service and agents were left running; files in {fleet.workdir}"
    elif temp:
        left = "the service and agents were stopped and the temporary files removed"
    else:
        left = f"the service and agents were stopped; files left in {fleet.workdir}"
    return f"demo stopped {where} after {len(done)} stage(s) ({', '.join(done) or 'none'}); {left}"


def _run_stages(fleet: _Fleet, stages: list[Stage], *, count: int, quiet: bool) -> None:
    steps: list[tuple[str, Callable[[_Fleet, Stage], None]]] = [
        ("init", _stage_init),
        ("release", _stage_release),
        ("provision", lambda f, s: _stage_provision(f, s, count=count)),
        ("serve", _stage_serve),
        ("enroll", lambda f, s: _stage_enroll(f, s, quiet=quiet)),
        ("telemetry", _stage_telemetry),
        ("reenroll", _stage_reenroll),
        ("update", lambda f, s: _stage_update(f, s, quiet=quiet)),
        ("rollback", _stage_rollback),
        ("attest", _stage_attest),
        ("quarantine", _stage_quarantine),
        ("heal", _stage_heal),
        ("revoke", _stage_revoke),
    ]
    for name, step in steps:
        stage = Stage(name)
        stages.append(stage)
        started = time.perf_counter()
        try:
            if not quiet:
                console.rule(f"[bold]{name}")
            step(fleet, stage)
        except TrustFleetError as exc:
            stage.ok = False
            stage.details["error"] = exc.one_line()
        stage.seconds = round(time.perf_counter() - started, 3)
        if not quiet:
            mark = "[green]✓[/]" if stage.ok else "[red]✗[/]"
            console.print(
                f"{mark} {name} ({stage.seconds:.1f} s) {json.dumps(stage.details)[:200]}"
            )
        if not stage.ok:
            return


def _stage_init(fleet: _Fleet, stage: Stage) -> None:
    from trustfleet.services.home import HomeOptions, init_server_home

    init_server_home(
        fleet.home,
        options=HomeOptions(
            organization="TrustFleet Demo", api_port=fleet.port, mqtt_port=fleet.mqtt_port
        ),
        now=now(),
    )
    stage.ok = (fleet.home / "public" / "ca-bundle.pem").is_file()
    stage.details = {"home": str(fleet.home), "api_port": fleet.port, "mqtt_port": fleet.mqtt_port}


def _stage_release(fleet: _Fleet, stage: Stage) -> None:
    stage.details = _publish(fleet, _V1)
    stage.ok = True


def _stage_provision(fleet: _Fleet, stage: Stage, *, count: int) -> None:
    from trustfleet.services.factory import provision_devices

    made = provision_devices(
        _runtime(fleet), out_dir=fleet.devices_dir, count=count, model=_MODEL, now=now()
    )
    fleet.device_ids = [d.device_id for d in made]
    for device_id in fleet.device_ids:  # a lively demo: telemetry every second
        conf = fleet.devices_dir / device_id / "device.toml"
        text = conf.read_text(encoding="utf-8")
        text = text.replace("telemetry_interval_s = 10", "telemetry_interval_s = 1")
        text = text.replace("connect_timeout_s = 10", "connect_timeout_s = 3")  # loopback
        conf.write_text(text.replace("heartbeat_interval_s = 30", "heartbeat_interval_s = 5"))
    stage.ok = len(made) == count
    stage.details = {"devices": count, "first": fleet.device_ids[0]}


def _stage_serve(fleet: _Fleet, stage: Stage) -> None:
    cmd = [_cli(), "server", "run", "--home", str(fleet.home), "--api-port", str(fleet.port)]
    fleet.server = subprocess.Popen(
        [*cmd, "--mqtt-port", str(fleet.mqtt_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    _wait_healthy(fleet)
    _wait_port(fleet.mqtt_port)
    stage.ok = True
    stage.details = {
        "https": f"https://localhost:{fleet.port}",
        "mqtts": f"localhost:{fleet.mqtt_port}",
        "pid": fleet.server.pid,
    }


def _stage_enroll(fleet: _Fleet, stage: Stage, *, quiet: bool) -> None:
    for device_id in fleet.device_ids:
        _start_agent(fleet, device_id)
    done: set[str] = set()
    deadline = time.monotonic() + _AGENT_TIMEOUT_S
    with Progress(
        TextColumn("agents enrolling over EST (key in each device's token)"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=quiet,
    ) as progress:
        task = progress.add_task("enroll", total=len(fleet.device_ids))
        while len(done) < len(fleet.device_ids) and time.monotonic() < deadline:
            states = _device_states(fleet)
            for device_id, state in states.items():
                if state == "enrolled" and device_id not in done:
                    done.add(device_id)
                    progress.advance(task)
            time.sleep(0.3)
    stage.ok = len(done) == len(fleet.device_ids)
    stage.details = {"enrolled": len(done), "devices": len(fleet.device_ids)}


def _stage_telemetry(fleet: _Fleet, stage: Stage) -> None:
    deadline = time.monotonic() + _AGENT_TIMEOUT_S
    counts = _telemetry_counts(fleet)
    while time.monotonic() < deadline and min(counts.values(), default=0) < 3:
        time.sleep(0.5)
        counts = _telemetry_counts(fleet)
    stage.ok = min(counts.values(), default=0) >= 3
    stage.details = {
        "rows_per_device_min": min(counts.values(), default=0),
        "rows": sum(counts.values()),
    }


def _stage_reenroll(fleet: _Fleet, stage: Stage) -> None:
    device_id = fleet.device_ids[1]
    before = _ldevid(fleet, device_id).serial_number
    _stop_agent(fleet, device_id)
    proc = _agent(fleet, device_id, "--reenroll")
    after = _ldevid(fleet, device_id).serial_number
    rows_before = _telemetry_counts(fleet)[device_id]
    _start_agent(fleet, device_id)
    deadline = time.monotonic() + _AGENT_TIMEOUT_S
    while time.monotonic() < deadline and _telemetry_counts(fleet)[device_id] < rows_before + 2:
        time.sleep(0.5)
    flowing = _telemetry_counts(fleet)[device_id] >= rows_before + 2
    stage.ok = proc.returncode == 0 and after != before and flowing
    stage.details = {
        "device": device_id,
        "old_serial": format(before, "x"),
        "new_serial": format(after, "x"),
        "telemetry_after_reenroll": flowing,
    }


def _stage_update(fleet: _Fleet, stage: Stage, *, quiet: bool) -> None:
    released = _publish(fleet, _V2)
    faulty = fleet.device_ids[2]
    wave = [d for d in fleet.device_ids if d != faulty]
    if not quiet:
        console.print(f"campaign: {_V1} → {_V2} over {len(wave)} devices in two waves")
    status = _run_campaign(fleet, wave, waves=[50.0, 100.0], max_failure_rate=0.05)
    rows = status.devices
    committed = [r.device_id for r in rows if r.state == "committed"]
    by_delta = sum(1 for r in rows if r.state == "committed" and r.delta)
    versions = _firmware(fleet, wave)
    stage.ok = (
        status.campaign.state == "completed"
        and len(committed) == len(wave)
        and all(v == _V2 for v in versions.values())
        and by_delta > len(wave) // 2
    )
    stage.details = {
        "release": released,
        "campaign": status.campaign.id,
        "state": status.campaign.state,
        "waves": [{"wave": w.wave, "size": w.size, "states": dict(w.states)} for w in status.waves],
        "committed": len(committed),
        "by_delta": by_delta,
        "devices": len(wave),
    }


def _stage_rollback(fleet: _Fleet, stage: Stage) -> None:
    device_id = fleet.device_ids[2]
    fault = fleet.devices_dir / device_id / "faults.json"
    fault.write_text(json.dumps({"health_check": "fail"}), encoding="utf-8")
    try:
        status = _run_campaign(fleet, [device_id], waves=[100.0], max_failure_rate=0.05)
    finally:
        fault.unlink(missing_ok=True)
    row = next((r for r in status.devices if r.device_id == device_id), None)
    firmware = _firmware(fleet, [device_id])[device_id]
    env = json.loads((fleet.devices_dir / device_id / "bootenv.json").read_text(encoding="utf-8"))
    stage.ok = (
        row is not None
        and row.state == "rolled_back"
        and status.campaign.state == "halted"
        and env.get("boot_slot") == "a"
        and firmware in (None, _V1)
    )
    stage.details = {
        "device": device_id,
        "device_state": row.state if row else None,
        "reason": row.reason if row else None,
        "campaign_state": status.campaign.state,
        "boot_slot": env.get("boot_slot"),
        "firmware_version": firmware or _V1,
    }


def _stage_attest(fleet: _Fleet, stage: Stage) -> None:
    live = [d for d in fleet.device_ids if d in fleet.agents]
    verdicts = _attest_run(fleet, live)
    passed = [d for d, v in verdicts.items() if v.get("ok")]
    stage.ok = len(passed) == len(live)
    stage.details = {
        "devices": len(live),
        "passed": len(passed),
        "releases": sorted({str(v.get("release")) for v in verdicts.values()}),
        "failed": {d: v for d, v in verdicts.items() if not v.get("ok")},
    }


def _stage_quarantine(fleet: _Fleet, stage: Stage) -> None:
    victim = fleet.device_ids[3]
    folder = fleet.devices_dir / victim
    slot = json.loads((folder / "bootenv.json").read_text(encoding="utf-8"))["boot_slot"]
    with (folder / "slots" / slot / "image.bin").open("r+b") as image:  # the attacker's change
        image.seek(_IMAGE_BYTES // 2)
        image.write(b"\x90" * 4096)
    # What a voltage glitch does to a real bootloader: the failed check is skipped.
    (folder / "faults.json").write_text(json.dumps({"boot": "skip_verify"}), encoding="utf-8")
    _stop_agent(fleet, victim)
    tampered_at = time.monotonic()
    _start_agent(fleet, victim)  # reboot: the boot chain measures the tampered image
    deadline = tampered_at + _AGENT_TIMEOUT_S
    while _quarantine_of(fleet, victim) is None and time.monotonic() < deadline:
        time.sleep(0.2)
    quarantined = _quarantine_of(fleet, victim)
    seconds = time.monotonic() - tampered_at
    time.sleep(2.0)  # the broker applies the quarantine; what was in flight lands
    before = _telemetry_counts(fleet)
    time.sleep(3.0)
    after = _telemetry_counts(fleet)
    with _runtime(fleet).uow.begin(read_only=True) as tx:
        last = tx.attestation.results(victim, limit=1)
    codes = sorted({str(f.get("code")) for f in last[0].findings}) if last else []
    others = [d for d in fleet.device_ids if d in fleet.agents and d != victim]
    stage.ok = (
        quarantined is not None
        and "attestation.measurement.unknown" in codes
        and after[victim] == before[victim]
        and all(after[d] > before[d] for d in others)
    )
    stage.details = {
        "device": victim,
        "tamper_to_quarantine_s": round(seconds, 2),
        "findings": codes,
        "reason": quarantined.reason if quarantined else None,
        "telemetry_blocked": after[victim] == before[victim],
    }


def _stage_heal(fleet: _Fleet, stage: Stage) -> None:
    victim = fleet.device_ids[3]
    released = _publish(fleet, _V3)
    status = _run_campaign(fleet, [victim], waves=[100.0], max_failure_rate=0.05, version=_V3)
    row = next((r for r in status.devices if r.device_id == victim), None)
    verdict = _attest_run(fleet, [victim])[victim]
    deadline = time.monotonic() + _AGENT_TIMEOUT_S
    while _quarantine_of(fleet, victim) is not None and time.monotonic() < deadline:
        time.sleep(0.2)
    released_now = _quarantine_of(fleet, victim) is None
    rows_before = _telemetry_counts(fleet)[victim]
    while time.monotonic() < deadline and _telemetry_counts(fleet)[victim] < rows_before + 2:
        time.sleep(0.5)
    flowing = _telemetry_counts(fleet)[victim] >= rows_before + 2
    stage.ok = (
        row is not None
        and row.state == "committed"
        and bool(verdict.get("ok"))
        and released_now
        and flowing
    )
    stage.details = {
        "device": victim,
        "release": released["version"],
        "update": row.state if row else None,
        "by_delta": row.delta if row else None,
        "attestation": "pass" if verdict.get("ok") else verdict,
        "quarantine_lifted": released_now,
        "telemetry_again": flowing,
    }


def _stage_revoke(fleet: _Fleet, stage: Stage) -> None:
    from trustfleet.services.revocation import revoke_device

    victim = fleet.device_ids[0]
    others = [d for d in fleet.device_ids if d != victim]
    cert = _ldevid(fleet, victim)
    revoked_at = time.monotonic()
    revoke_device(_runtime(fleet), victim, reason="keyCompromise", actor="operator:demo", now=now())
    cut_off_s = _wait_cut_off(fleet, victim, since=revoked_at)
    after_cut = _telemetry_counts(fleet)
    time.sleep(3.0)  # the others keep publishing; the victim stays silent
    later = _telemetry_counts(fleet)
    victim_silent = later[victim] == after_cut[victim]
    others_flow = all(later[d] > after_cut[d] for d in others)
    refused = _agent_once(fleet, victim)
    ocsp_status = _ocsp_status(fleet, cert)
    in_crl = _crl_lists(fleet, cert.serial_number)
    stage.ok = (
        cut_off_s is not None
        and victim_silent
        and others_flow
        and refused.returncode != 0
        and ocsp_status == "REVOKED"
        and in_crl
    )
    stage.details = {
        "device": victim,
        "cut_off_seconds": None if cut_off_s is None else round(cut_off_s, 2),
        "victim_silent_after": victim_silent,
        "others_keep_publishing": others_flow,
        "reconnect_refused": refused.returncode != 0,
        "ocsp": ocsp_status,
        "in_crl": in_crl,
    }


def _report(fleet: _Fleet, stages: list[Stage], *, json_out: bool, keep: bool, ok: bool) -> None:
    if json_out:
        emit_json(
            {
                "ok": ok,
                "workdir": str(fleet.workdir),
                "stages": [
                    {"name": s.name, "ok": s.ok, "seconds": s.seconds, "details": s.details}
                    for s in stages
                ],
            }
        )
        return
    table = Table("stage", "ok", "seconds", title="TrustFleet demo")
    for s in stages:
        table.add_row(s.name, "[green]yes[/]" if s.ok else "[red]no[/]", f"{s.seconds:.1f}")
    console.print(table)
    if keep:
        console.print(
            f"service: https://localhost:{fleet.port}  home: {fleet.home}  "
            f"devices: {fleet.devices_dir}"
        )
        console.print(f"stop it with: kill -TERM -{fleet.server.pid if fleet.server else '?'}")


if __name__ == "__main__":
    from trustfleet.cli.main import main

    sys.exit(main(["demo", *sys.argv[1:]]))
