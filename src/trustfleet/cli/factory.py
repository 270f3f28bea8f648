"""``trustfleet factory …``: provisioning on the production line."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, BinaryIO, Literal

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from trustfleet.cli._common import (
    HomeOpt,
    JsonOpt,
    command_runtime,
    console,
    emit_json,
    interruptible,
    now,
)
from trustfleet.errors import InvalidInput
from trustfleet.fileio import read_bounded
from trustfleet.settings import load_server_settings

__all__ = ["app"]

app = typer.Typer(
    help="Provision devices: identity keys in tokens and IDevID certificates.", no_args_is_help=True
)

_MAX_CSR_FILE_BYTES = 64 * 1024


@app.command("provision")
def provision(
    home: HomeOpt,
    out: Annotated[
        Path | None, typer.Option("--out", help="Directory that receives one folder per device.")
    ] = None,
    count: Annotated[int, typer.Option("--count", help="How many devices (1-10000).")] = 1,
    model: Annotated[str, typer.Option("--model", help="Hardware model name.")] = "sim-v1",
    reprovision: Annotated[
        Path | None,
        typer.Option(
            "--reprovision",
            help="Return a wiped (decommissioned) device folder to service: same TPM, new "
            "key, new device id, new IDevID (instead of --out).",
        ),
    ] = None,
    protocol: Annotated[
        str, typer.Option("--protocol", help="How the devices talk: mqtt or lwm2m.")
    ] = "mqtt",
    security: Annotated[
        str, typer.Option("--security", help="LwM2M DTLS mode: psk or cert.")
    ] = "psk",
    no_bootstrap: Annotated[
        bool,
        typer.Option(
            "--no-bootstrap",
            help="LwM2M psk: give a device-management credential at once (no bootstrap).",
        ),
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Create virtual devices, each with its own SoftHSM2 token, key and IDevID."""
    from trustfleet.services.factory import prepare_out_dir
    from trustfleet.services.lwm2m_factory import provision_with_protocol
    from trustfleet.services.runtime import Runtime

    if reprovision is not None and out is None:
        _reprovision(home, reprovision, json_out=json_out)
        return
    if out is None or reprovision is not None:
        raise InvalidInput(
            "give either --out (new devices) or --reprovision (a wiped device folder)",
            hint="e.g. --out devices --count 10, or --reprovision devices/<old-id>",
            code="factory.provision.target",
        )
    if not 1 <= count <= 10_000:
        raise InvalidInput("--count must be between 1 and 10000", hint="e.g. --count 10")
    _protocol(protocol), _security(security)  # bad options fail before any work
    prepare_out_dir(out)  # before the runtime opens: a bad --out fails at once
    rt = Runtime.open(load_server_settings(home))
    done = {"key": 0, "device": 0}

    def so_far() -> str:
        return (
            f"{done['device']} of {count} device(s) were provisioned and registered in {out}; "
            "unfinished device folders were removed"
        )

    try:
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            disable=json_out,
            transient=False,
        ) as progress:
            keys = progress.add_task("device keys in tokens", total=count)
            certs = progress.add_task("IDevIDs issued", total=count)

            def step(kind: str) -> None:
                done[kind] += 1
                progress.advance(keys if kind == "key" else certs)

            with interruptible(so_far):
                devices, psk_identities = provision_with_protocol(
                    rt, out_dir=out, count=count, model=model,
                    protocol=_protocol(protocol), security=_security(security),
                    bootstrap=not no_bootstrap, now=now(), on_progress=step,
                )  # fmt: skip
    finally:
        rt.close()
    rows = [
        {
            **_device_row(d),
            "protocol": protocol,
            **({"psk_identity": psk_identities[d.device_id]} if psk_identities else {}),
        }
        for d in devices
    ]
    if json_out:
        emit_json({"devices": rows})
        return
    console.print(f"[green]✓[/] {len(rows)} device(s) provisioned in {out}")


def _reprovision(home: Path, folder: Path, *, json_out: bool) -> None:
    from trustfleet.services.reprovision import check_wiped, reprovision_device

    check_wiped(folder)  # before the runtime opens: a wrong folder fails at once
    with command_runtime(home) as rt:
        done = reprovision_device(rt, directory=folder, now=now())
    row = {**_device_row(done), "previous_device_id": done.previous_device_id, "tpm": done.tpm}
    if json_out:
        emit_json(row)
        return
    console.print(
        f"[green]✓[/] {done.previous_device_id} returned to service as "
        f"[bold]{done.device_id}[/] in {done.directory} (new key and IDevID"
        f"{', same TPM' if done.tpm else ''})"
    )


@app.command("sign-csr")
def sign_csr(
    home: HomeOpt,
    csr: Annotated[
        Path, typer.Option("--csr", help="PKCS#10 CSR (PEM or DER) made by the device.")
    ],
    out: Annotated[
        Path, typer.Option("--out", help="Where to write the IDevID certificate (PEM).")
    ],
    model: Annotated[str, typer.Option("--model", help="Hardware model name.")] = "sim-v1",
    json_out: JsonOpt = False,
) -> None:
    """Issue an IDevID for a key that lives in a real device's secure element, and register it."""
    from cryptography.hazmat.primitives import serialization

    from trustfleet.services.factory import sign_csr as do_sign

    data = _read_bounded(csr)
    load_server_settings(home)  # a bad home fails before --out is created
    target = _create_out_file(out)  # before the device is registered: a bad --out changes nothing
    try:
        with command_runtime(home) as rt:
            device = do_sign(rt, csr_bytes=data, model=model, now=now())
    except BaseException:
        target.close()
        out.unlink(missing_ok=True)
        raise
    with target:
        target.write(device.certificate.public_bytes(serialization.Encoding.PEM))
    if json_out:
        emit_json(
            {
                "device_id": device.device_id,
                "certificate": str(out),
                "serial": format(device.certificate.serial_number, "x"),
            }
        )
        return
    console.print(
        f"[green]✓[/] device [bold]{device.device_id}[/] registered; IDevID written to {out}"
    )


_PROTOCOLS: dict[str, Literal["mqtt", "lwm2m"]] = {"mqtt": "mqtt", "lwm2m": "lwm2m"}
_SECURITY: dict[str, Literal["psk", "cert"]] = {"psk": "psk", "cert": "cert"}


def _protocol(value: str) -> Literal["mqtt", "lwm2m"]:
    if value not in _PROTOCOLS:
        raise InvalidInput("--protocol must be mqtt or lwm2m", code="factory.protocol.invalid")
    return _PROTOCOLS[value]


def _security(value: str) -> Literal["psk", "cert"]:
    if value not in _SECURITY:
        raise InvalidInput("--security must be psk or cert", code="factory.security.invalid")
    return _SECURITY[value]


def _device_row(d: Any) -> dict[str, Any]:
    return {
        "device_id": d.device_id,
        "model": d.model,
        "directory": str(d.directory),
        "idevid_serial": format(d.certificate.serial_number, "x"),
        "allowed_builders": list(d.allowed_builders),
    }


def _create_out_file(out: Path) -> BinaryIO:
    """Create ``out`` (never an existing file or a symlink), open for writing."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        return os.fdopen(os.open(out, flags, 0o644), "wb")
    except FileExistsError as exc:
        raise InvalidInput(f"{out} exists already", hint="choose another --out path") from exc
    except OSError as exc:
        raise InvalidInput(
            f"cannot create {out}: {exc.strerror}", hint="choose another --out path"
        ) from exc


def _read_bounded(path: Path) -> bytes:
    try:
        data = read_bounded(path, max_bytes=_MAX_CSR_FILE_BYTES)
    except OSError as exc:
        raise InvalidInput(
            f"cannot read {path}: {exc.strerror}", hint="check the --csr path"
        ) from exc
    if data is None:
        raise InvalidInput(f"{path} is larger than 64 KiB; not a CSR", hint="check the --csr path")
    return data
