"""``trustfleet demo``: a fleet is made, enrolls, re-enrolls, and loses a revoked member.

Everything is real: SoftHSM2 tokens for the CAs and for each device, the HTTPS service as a
child process on a free loopback port, each device enrolling from a process of its own with its
key in its token (awscrt mTLS), an OCSP and CRL check of the revocation.
"""

from __future__ import annotations

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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
from cryptography import x509
from cryptography.x509 import ocsp
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from trustfleet.cli._common import JsonOpt, console, emit_json, now
from trustfleet.errors import TrustFleetError, Unavailable

__all__ = ["demo"]

_START_TIMEOUT_S = 30.0
_ENROLL_PARALLEL = 4


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
    device_ids: list[str] = field(default_factory=list)
    server: subprocess.Popen[bytes] | None = None


def demo(
    devices: Annotated[
        int, typer.Option("--devices", min=2, max=200, help="How many virtual devices.")
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
    if workdir is not None and workdir.exists() and any(workdir.iterdir()):
        raise TrustFleetError(f"{workdir} is not empty", hint="give an empty or new --workdir")
    fleet = _Fleet(
        workdir=root, home=root / "server", devices_dir=root / "devices", port=_free_port()
    )
    stages: list[Stage] = []
    try:
        _run_stages(fleet, stages, count=devices, quiet=json_out)
    finally:
        if not keep:
            _stop(fleet)
            if workdir is None:
                shutil.rmtree(root, ignore_errors=True)
    ok = bool(stages) and all(s.ok for s in stages)
    _report(fleet, stages, json_out=json_out, keep=keep, ok=ok)
    raise typer.Exit(0 if ok else 1)


def _run_stages(fleet: _Fleet, stages: list[Stage], *, count: int, quiet: bool) -> None:
    steps: list[tuple[str, Callable[[_Fleet, Stage], None]]] = [
        ("init", _stage_init),
        ("provision", lambda f, s: _stage_provision(f, s, count=count)),
        ("serve", _stage_serve),
        ("enroll", lambda f, s: _stage_enroll(f, s, quiet=quiet)),
        ("reenroll", _stage_reenroll),
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
        options=HomeOptions(organization="TrustFleet Demo", api_port=fleet.port),
        now=now(),
    )
    stage.ok = (fleet.home / "public" / "ca-bundle.pem").is_file()
    stage.details = {"home": str(fleet.home), "port": fleet.port}


def _stage_provision(fleet: _Fleet, stage: Stage, *, count: int) -> None:
    from trustfleet.services.factory import provision_devices
    from trustfleet.services.runtime import Runtime
    from trustfleet.settings import load_server_settings

    rt = Runtime.open(load_server_settings(fleet.home))
    try:
        made = provision_devices(
            rt, out_dir=fleet.devices_dir, count=count, model="sim-v1", now=now()
        )
    finally:
        rt.close()
    fleet.device_ids = [d.device_id for d in made]
    stage.ok = len(made) == count
    stage.details = {"devices": count, "first": fleet.device_ids[0]}


def _stage_serve(fleet: _Fleet, stage: Stage) -> None:
    fleet.server = subprocess.Popen(
        [_cli(), "server", "run", "--home", str(fleet.home), "--api-port", str(fleet.port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    _wait_healthy(fleet)
    stage.ok = True
    stage.details = {"url": f"https://localhost:{fleet.port}", "pid": fleet.server.pid}


def _stage_enroll(fleet: _Fleet, stage: Stage, *, quiet: bool) -> None:
    results: dict[str, bool] = {}
    with Progress(
        TextColumn("enrolling over EST (key in each device's token)"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=quiet,
    ) as progress:
        task = progress.add_task("enroll", total=len(fleet.device_ids))

        def one(device_id: str) -> None:
            results[device_id] = _agent(fleet, device_id).returncode == 0
            progress.advance(task)

        with ThreadPoolExecutor(max_workers=_ENROLL_PARALLEL) as pool:
            list(pool.map(one, fleet.device_ids))
    enrolled = sum(results.values())
    stage.ok = enrolled == len(fleet.device_ids)
    stage.details = {"enrolled": enrolled, "devices": len(fleet.device_ids)}


def _stage_reenroll(fleet: _Fleet, stage: Stage) -> None:
    device_id = fleet.device_ids[1]
    before = _ldevid(fleet, device_id).serial_number
    proc = _agent(fleet, device_id, "--reenroll")
    after = _ldevid(fleet, device_id).serial_number
    stage.ok = proc.returncode == 0 and after != before
    stage.details = {
        "device": device_id,
        "old_serial": format(before, "x"),
        "new_serial": format(after, "x"),
    }


def _stage_revoke(fleet: _Fleet, stage: Stage) -> None:
    from trustfleet.services.revocation import revoke_device
    from trustfleet.services.runtime import Runtime
    from trustfleet.settings import load_server_settings

    victim, witness = fleet.device_ids[0], fleet.device_ids[-1]
    cert = _ldevid(fleet, victim)
    rt = Runtime.open(load_server_settings(fleet.home))
    try:
        started = time.perf_counter()
        revoke_device(rt, victim, reason="keyCompromise", actor="operator:demo", now=now())
        revoke_s = time.perf_counter() - started
    finally:
        rt.close()
    ocsp_status = _ocsp_status(fleet, cert)
    in_crl = _crl_lists(fleet, cert.serial_number)
    refused = _agent(fleet, victim, "--reenroll")
    others = _agent(fleet, witness, "--reenroll")
    stage.ok = (
        ocsp_status == "REVOKED" and in_crl and refused.returncode != 0 and others.returncode == 0
    )
    stage.details = {
        "device": victim,
        "revoke_seconds": round(revoke_s, 3),
        "ocsp": ocsp_status,
        "in_crl": in_crl,
        "reenroll_refused": refused.returncode != 0,
        "refusal": refused.stderr.decode(errors="replace").strip()[:160],
        "other_device_reenrolls": others.returncode == 0,
    }


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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cli() -> str:
    return str(Path(sys.executable).parent / "trustfleet")


if __name__ == "__main__":
    from trustfleet.cli.main import main

    sys.exit(main(["demo", *sys.argv[1:]]))
