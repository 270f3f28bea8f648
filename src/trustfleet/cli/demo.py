"""``trustfleet demo``: a fleet is made, enrolls, updates, attests, and loses a revoked member.

Everything is real: SoftHSM2 tokens for the CAs and for each device, the HTTPS service as a
child process on a free loopback port, each device enrolling from a process of its own with its
key in its token (awscrt mTLS), TUF-signed releases installed into A/B slots through the boot
chain, a campaign in waves, and an OCSP and CRL check of the revocation.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
from cryptography import x509
from cryptography.x509 import ocsp
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from trustfleet.cli._common import JsonOpt, console, emit_json, interruptible, now
from trustfleet.errors import InvalidInput, TrustFleetError, Unavailable

__all__ = ["demo"]

_START_TIMEOUT_S = 30.0
_AGENT_TIMEOUT_S = 60.0
_CUT_OFF_TIMEOUT_S = 10.0
_UPDATE_TIMEOUT_S = 180.0
_IMAGE_BYTES = 8 * 1024 * 1024
_MODEL = "sim-v1"
_V1, _V2, _V3 = "1.0.0", "1.1.0", "1.2.0"
_ATTEST_WAIT_S = 60


@dataclass
class Stage:
    """One stage of the demo and what it showed."""

    name: str
    ok: bool = False
    seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Fleet:
    workdir: Path
    home: Path
    devices_dir: Path
    port: int
    mqtt_port: int
    device_ids: list[str] = field(default_factory=list)
    server: subprocess.Popen[bytes] | None = None
    agents: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    runtime: Any = None  # the demo's one handle on the store and keys (see _runtime)


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


def _publish(fleet: _Fleet, version: str) -> dict[str, Any]:
    """Make a simulator image, build and publish it as a release; what was published."""
    from trustfleet.services.ota import build_release, publish_release
    from trustfleet.sim.image import build_image

    image = fleet.workdir / f"image-{version}.bin"
    info = build_image(image, version=version, size_bytes=_IMAGE_BYTES, seed=_MODEL)
    rt = _runtime(fleet)
    build_release(rt, image=image, version=version, model=_MODEL, min_version=None, now=now())
    record = publish_release(rt, model=_MODEL, version=version, now=now())
    image.unlink()
    return {
        "version": record.version,
        "image_bytes": info.length,
        "targets_version": record.targets_version,
    }


def _stage_release(fleet: _Fleet, stage: Stage) -> None:
    stage.details = _publish(fleet, _V1)
    stage.ok = True


def _runtime(fleet: _Fleet) -> Any:
    """One runtime for the whole demo, opened on first use and closed by :func:`_stop`."""
    if fleet.runtime is None:
        from trustfleet.services.runtime import Runtime
        from trustfleet.settings import load_server_settings

        fleet.runtime = Runtime.open(load_server_settings(fleet.home))
    return fleet.runtime


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


def _run_campaign(
    fleet: _Fleet,
    devices: list[str],
    *,
    waves: list[float],
    max_failure_rate: float,
    version: str = _V2,
) -> Any:
    """Create a campaign for ``devices`` and wait (bounded) until it ends; its last status."""
    from trustfleet.services.campaigns import campaign_status, create_campaign

    rt = _runtime(fleet)
    campaign = create_campaign(
        rt,
        version=version,
        model=_MODEL,
        devices=devices,
        waves=waves,
        max_failure_rate=max_failure_rate,
        now=now(),
        device_timeout_s=int(_UPDATE_TIMEOUT_S),
        actor="operator:demo",
    )
    deadline = time.monotonic() + _UPDATE_TIMEOUT_S
    status = campaign_status(rt, campaign.id)
    while status.campaign.state == "running" and time.monotonic() < deadline:
        time.sleep(0.5)
        status = campaign_status(rt, campaign.id)
    return status


def _firmware(fleet: _Fleet, device_ids: list[str]) -> dict[str, str | None]:
    with _runtime(fleet).uow.begin(read_only=True) as tx:
        return {d: tx.devices.require(d).firmware_version for d in device_ids}


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


def _attest_run(fleet: _Fleet, device_ids: list[str]) -> dict[str, dict[str, Any]]:
    """``trustfleet attest run`` for each device, concurrently; each verdict (or its error).

    A child process each: this process signs releases through python-pkcs11, and a challenge
    is published with the service key through awscrt, which must not share the token login.
    """
    procs = {
        d: subprocess.Popen(
            [
                _cli(),
                "attest",
                "run",
                "--home",
                str(fleet.home),
                d,
                "--json",
                "--wait",
                str(_ATTEST_WAIT_S),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        for d in device_ids
    }
    verdicts: dict[str, dict[str, Any]] = {}
    for device_id, proc in procs.items():
        out, err = proc.communicate(timeout=_ATTEST_WAIT_S + 60)
        try:
            verdicts[device_id] = json.loads(out)
        except json.JSONDecodeError:
            verdicts[device_id] = {"ok": False, "error": err.decode(errors="replace")[-300:]}
    return verdicts


def _quarantine_of(fleet: _Fleet, device_id: str) -> Any:
    with _runtime(fleet).uow.begin(read_only=True) as tx:
        return tx.attestation.quarantine(device_id)


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


def _wait_cut_off(fleet: _Fleet, victim: str, *, since: float) -> float | None:
    """Seconds from the revocation until the victim's agent lost its MQTT connection."""
    log = fleet.devices_dir / victim / "agent.log"
    start_size = log.stat().st_size if log.exists() else 0
    deadline = since + _CUT_OFF_TIMEOUT_S
    while time.monotonic() < deadline:
        with log.open("rb") as fh:
            fh.seek(start_size)
            tail = fh.read().decode(errors="replace").lower()
        if "disconnect" in tail or "connection lost" in tail or "stopped" in tail:
            return time.monotonic() - since
        time.sleep(0.1)
    return None


def _start_agent(fleet: _Fleet, device_id: str) -> None:
    folder = fleet.devices_dir / device_id
    log = (folder / "agent.log").open("ab")
    fleet.agents[device_id] = subprocess.Popen(
        [_cli() + "-agent", "run", "--device", str(folder)],  # the device's lean entry point
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    log.close()


def _stop_agent(fleet: _Fleet, device_id: str) -> None:
    proc = fleet.agents.pop(device_id, None)
    if proc is None or proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


def _agent(fleet: _Fleet, device_id: str, *extra: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [
            _cli(),
            "agent",
            "enroll",
            "--device",
            str(fleet.devices_dir / device_id),
            "--json",
            *extra,
        ],
        capture_output=True,
        timeout=60,
        check=False,
    )


def _agent_once(fleet: _Fleet, device_id: str) -> subprocess.CompletedProcess[bytes]:
    folder = str(fleet.devices_dir / device_id)
    return subprocess.run(
        [_cli(), "agent", "run", "--device", folder, "--once"],
        capture_output=True,
        timeout=90,
        check=False,
    )


def _device_states(fleet: _Fleet) -> dict[str, str]:
    with _runtime(fleet).uow.begin(read_only=True) as tx:
        return {d: tx.devices.require(d).state for d in fleet.device_ids}


def _telemetry_counts(fleet: _Fleet) -> dict[str, int]:
    with _runtime(fleet).uow.begin(read_only=True) as tx:
        return {d: tx.telemetry.count(device_id=d) for d in fleet.device_ids}


def _ldevid(fleet: _Fleet, device_id: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(
        (fleet.devices_dir / device_id / "ldevid.pem").read_bytes()
    )


def _tls_context(fleet: _Fleet) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(fleet.home / "public" / "ca-bundle.pem"))


def _ocsp_status(fleet: _Fleet, cert: x509.Certificate) -> str:
    from trustfleet.pki import ocsp_request_for

    issuer = x509.load_pem_x509_certificate((fleet.home / "public" / "device-ca.pem").read_bytes())
    request = urllib.request.Request(  # https to our own loopback service
        f"https://localhost:{fleet.port}/ocsp",
        data=ocsp_request_for(cert, issuer),
        headers={"content-type": "application/ocsp-request"},
    )
    with urllib.request.urlopen(request, context=_tls_context(fleet), timeout=10) as resp:  # noqa: S310
        answer = ocsp.load_der_ocsp_response(resp.read(64 * 1024))
    return answer.certificate_status.name


def _crl_lists(fleet: _Fleet, serial: int) -> bool:
    url = f"https://localhost:{fleet.port}/crl/device.crl"
    with urllib.request.urlopen(url, context=_tls_context(fleet), timeout=10) as resp:
        crl = x509.load_der_x509_crl(resp.read(1024 * 1024))
    return crl.get_revoked_certificate_by_serial_number(serial) is not None


def _wait_healthy(fleet: _Fleet) -> None:
    deadline = time.monotonic() + _START_TIMEOUT_S
    context = _tls_context(fleet)
    while time.monotonic() < deadline:
        if fleet.server is not None and fleet.server.poll() is not None:
            err = fleet.server.stderr.read().decode(errors="replace") if fleet.server.stderr else ""
            raise Unavailable(f"the service exited: {err.strip()[-300:]}")
        try:
            url = f"https://localhost:{fleet.port}/healthz"
            with urllib.request.urlopen(url, context=context, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise Unavailable("the service did not become healthy in time")


def _stop(fleet: _Fleet) -> None:
    for device_id in list(fleet.agents):
        _stop_agent(fleet, device_id)
    if fleet.runtime is not None:
        fleet.runtime.close()
        fleet.runtime = None
    if fleet.server is None or fleet.server.poll() is not None:
        return
    os.killpg(fleet.server.pid, signal.SIGTERM)
    try:
        fleet.server.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(fleet.server.pid, signal.SIGKILL)
        fleet.server.wait(timeout=5)


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


def _wait_port(port: int) -> None:
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.2)
    raise Unavailable(f"the MQTT broker did not open port {port} in time")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cli() -> str:
    return str(Path(sys.executable).parent / "trustfleet")


if __name__ == "__main__":
    from trustfleet.cli.main import main

    sys.exit(main(["demo", *sys.argv[1:]]))
