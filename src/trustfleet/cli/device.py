"""``trustfleet device …``: the inventory, one device, revocation, re-opened enrollment, and
commands (``ping``, ``report``) with their results."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, Final

import typer
from rich.table import Table

from trustfleet.cli._common import (
    ACTOR,
    command_runtime,
    console,
    device_runtime,
    emit_json,
    now,
    present_done,
    present_page,
    stderr,
)
from trustfleet.cli._device_decommission import decommission_summary, shown_state
from trustfleet.cli._device_decommission import register as _register_decommission
from trustfleet.cli._options import CursorOpt, DeviceArg, HomeOpt, JsonOpt, LimitOpt
from trustfleet.errors import InvalidInput

if TYPE_CHECKING:
    from trustfleet.services.inventory import InventoryRow
    from trustfleet.store import DeviceCommandRecord

__all__ = ["app"]

app = typer.Typer(
    help="Inspect and revoke devices; re-open an enrolled device's enrollment; send commands.",
    no_args_is_help=True,
)


def _cert_row(rec: Any) -> dict[str, Any]:
    return {
        "kind": rec.kind,
        "issuer": rec.issuer,
        "serial": rec.serial,
        "status": rec.status,
        "not_before": rec.not_before.isoformat(),
        "not_after": rec.not_after.isoformat(),
        "sha256": rec.sha256,
        "revoked_at": rec.revoked_at.isoformat() if rec.revoked_at else None,
        "revocation_reason": rec.revocation_reason,
    }


_DURATION = re.compile(r"(\d{1,5})([smhd])")
_UNITS: Final = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
MAX_WAIT_S: Final = 300
"""Longest ``device command --wait``."""
POLL_S: Final = 0.5
"""How often ``--wait`` reads the store for the answer."""


def _duration(text: str | None, *, example: str) -> timedelta | None:
    """A duration such as ``30s``, ``5m``, ``12h`` or ``7d`` (None stays None)."""
    if text is None:
        return None
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise InvalidInput(
            f"'{text[:20]}' is not a duration", hint=f"use e.g. {example}", code="cli.duration"
        )
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def _within(text: str | None) -> timedelta | None:
    """``--expires-within``: e.g. ``7d`` or ``12h``."""
    return _duration(text, example="7d or 12h")


def _when(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _inventory_row(row: InventoryRow) -> dict[str, Any]:
    d = row.device
    verdict = {True: "ok", False: "failed", None: "none"}[row.attestation_ok]
    return {
        "id": d.id, "model": d.model, "state": d.state, "created_at": d.created_at.isoformat(),
        "firmware_version": d.firmware_version, "last_seen_at": _when(d.last_seen_at),
        "online": row.online, "cert_not_after": _when(row.cert_not_after),
        "attestation": verdict, "attested_at": _when(row.attested_at),
        "quarantined": row.quarantined, "slot": row.slot, "decommission": row.decommission,
        "protocol": d.protocol,
    }  # fmt: skip


def _inventory_cells(r: Mapping[str, Any]) -> tuple[str, ...]:
    flags = ("online" if r["online"] else "offline") + (" quarantined" if r["quarantined"] else "")
    state = "decommissioned (unverified)" if r["decommission"] == "unverified" else r["state"]
    return (
        r["id"], r["model"], r["protocol"], state, r["firmware_version"] or "-",
        (r["last_seen_at"] or "never")[:19], flags, (r["cert_not_after"] or "-")[:10],
        r["attestation"],
    )  # fmt: skip


@app.command("list")
def list_devices(
    home: HomeOpt,
    state: Annotated[
        str | None, typer.Option("--state", help="Only devices in this state.")
    ] = None,
    model: Annotated[str | None, typer.Option("--model", help="Only this model.")] = None,
    firmware: Annotated[
        str | None, typer.Option("--firmware", help="Only devices that run this release.")
    ] = None,
    online: Annotated[
        bool | None,
        typer.Option("--online/--offline", help="Only devices heard from lately (or not)."),
    ] = None,
    quarantined: Annotated[
        bool | None,
        typer.Option("--quarantined/--not-quarantined", help="Only quarantined devices (or not)."),
    ] = None,
    attestation: Annotated[
        str | None,
        typer.Option("--attestation", help="Newest verdict: ok, failed or none."),
    ] = None,
    expires_within: Annotated[
        str | None,
        typer.Option("--expires-within", help="LDevID ends within this (or ended), e.g. 7d."),
    ] = None,
    search: Annotated[str | None, typer.Option("--search", help="Id substring.")] = None,
    sort: Annotated[
        str, typer.Option("--sort", help="id, last_seen, cert_expiry, state, model (-: desc).")
    ] = "id",
    limit: LimitOpt = 1000,
    cursor: CursorOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """List the inventory, one page at a time: state, firmware, last seen, online, LDevID
    expiry, attestation and quarantine of each device."""
    from trustfleet.services.inventory import InventoryFilter, list_inventory

    at = now()
    within = _within(expires_within)
    filters = InventoryFilter(
        state=state, model=model, firmware_version=firmware, online=online,
        quarantined=quarantined, attestation=attestation,  # type: ignore[arg-type]  # checked
        cert_expires_before=None if within is None else at + within, search=search,
    )  # fmt: skip
    with command_runtime(home) as rt:
        page = list_inventory(rt, filters=filters, sort=sort, limit=limit, cursor=cursor, now=at)
    present_page(
        "devices", [_inventory_row(r) for r in page.items], next_cursor=page.next_cursor,
        json_out=json_out, cells=_inventory_cells,
        table=Table("device", "model", "protocol", "state", "firmware", "last seen", "online",
                    "cert expiry", "attestation"),
    )  # fmt: skip


@app.command("show")
def show(
    home: HomeOpt,
    device_id: DeviceArg,
    json_out: JsonOpt = False,
) -> None:
    """Show one device and its certificates."""
    from trustfleet.services.lwm2m import registration_summary
    from trustfleet.services.queries import device_detail

    with device_runtime(home) as rt:
        detail = device_detail(rt, device_id)
        retired = decommission_summary(rt, device_id)
        registration = registration_summary(rt, device_id)
    device = detail.device
    rows = [_cert_row(c) for c in detail.certificates]
    doc: dict[str, Any] = {
        "id": device.id,
        "model": device.model,
        "state": device.state,
        "created_at": device.created_at.isoformat(),
        "updated_at": device.updated_at.isoformat(),
        "last_seen_at": device.last_seen_at.isoformat() if device.last_seen_at else None,
        "certificates": rows,
        "decommission": retired,
        "protocol": device.protocol,
        "lwm2m": registration,
    }
    if json_out:
        emit_json(doc)
        return
    state = shown_state(device.state, retired)
    console.print(
        f"[bold]{device.id}[/]  model={device.model}  protocol={device.protocol}  state={state}"
    )
    if registration is not None:
        console.print(
            f"LwM2M: {registration['status']} {registration['location']} from "
            f"{registration['address']} ({registration['mode']}), lifetime "
            f"{registration['lifetime_s']} s, objects {' '.join(registration['objects'])}"
        )
    table = Table("kind", "issuer", "serial", "status", "not after")
    for c in rows:
        table.add_row(c["kind"], c["issuer"], c["serial"], c["status"], c["not_after"])
    console.print(table)


@app.command("revoke")
def revoke(
    home: HomeOpt,
    device_id: DeviceArg,
    reason: Annotated[str, typer.Option("--reason", help="RFC 5280 reason, e.g. keyCompromise.")],
    json_out: JsonOpt = False,
) -> None:
    """Revoke every certificate of a device; CRLs are reissued at once."""
    from trustfleet.services.revocation import revoke_device

    with device_runtime(home) as rt:
        revoked = revoke_device(rt, device_id, reason=reason, actor=ACTOR, now=now())
    doc = {"device_id": device_id, "reason": reason, "revoked": [_cert_row(r) for r in revoked]}
    line = f"device [bold]{device_id}[/] revoked ({len(revoked)} certificate(s))"
    present_done(doc, json_out=json_out, line=line)


@app.command("reopen")
def reopen(
    home: HomeOpt,
    device_id: DeviceArg,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Why (kept in the security log).")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Allow an enrolled device one more enrollment with its IDevID (e.g. after a reflash).

    The next certificate issued to the device uses the re-open up and supersedes its current
    LDevID; an unused re-open lapses after [pki] reopen_validity_hours.
    """
    from trustfleet.services.enrollment import reopen_enrollment

    with device_runtime(home) as rt:
        done = reopen_enrollment(rt, device_id, actor=ACTOR, reason=reason, now=now())
    doc = {
        "device_id": done.device_id,
        "expires_at": done.expires_at.isoformat(),
        "event_id": done.event_id,
        "already_open": done.already_open,
    }
    again = " (it was open already)" if done.already_open else ""
    line = f"device [bold]{device_id}[/] may enroll once with its IDevID until {doc['expires_at']}"
    present_done(doc, json_out=json_out, line=line + again)


def _command_doc(c: DeviceCommandRecord) -> dict[str, Any]:
    return {
        "id": c.id, "device_id": c.device_id, "name": c.name, "args": dict(c.args),
        "actor": c.actor, "state": c.state, "sent_at": c.sent_at.isoformat(), "ok": c.ok,
        "result": None if c.result is None else dict(c.result),
        "answered_at": _when(c.answered_at),
    }  # fmt: skip


@app.command("command")
def command(
    home: HomeOpt,
    device_id: DeviceArg,
    name: Annotated[str, typer.Argument(help="ping or report.")],
    wait: Annotated[
        str | None,
        typer.Option(
            "--wait",
            help="Wait up to this long (5m at most) for the answer, e.g. 10s.",
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Send a command to an enrolled device (the server must be running).

    Without --wait it prints the command id; 'device commands DEVICE' shows the answer later.
    Exits 1 when --wait ends without an answer.
    """
    from trustfleet.services.commands import get_device_command, send_device_command

    waiting = _duration(wait, example="10s or 1m")
    wait_s = None if waiting is None else min(waiting.total_seconds(), MAX_WAIT_S)
    with device_runtime(home) as rt:
        sent = send_device_command(rt, device_id, name, {}, now=now())  # type: ignore[arg-type]  # checked
        deadline = time.monotonic() + (wait_s or 0)
        record = sent
        while wait_s is not None and record.state == "sent" and time.monotonic() < deadline:
            time.sleep(POLL_S)  # polls the store for the ingest's answer, bounded by --wait
            record = get_device_command(rt, sent.id)
    doc = _command_doc(record)
    if json_out:
        emit_json(doc)
    elif record.state == "answered":
        verdict = "[green]ok[/]" if record.ok else "[red]failed[/]"
        console.print(f"{name} {device_id}: {verdict} {_one_line(doc['result'])}")
    else:
        console.print(f"[green]✓[/] sent {name} to [bold]{device_id}[/]: command {record.id}")
    if wait_s is not None and record.state != "answered":
        stderr.print(f"no answer from {device_id} within {wait_s:g} s (command {record.id})")
        raise typer.Exit(1)


_ModelOpt = Annotated[str | None, typer.Option("--model", help="Every enrolled device of it.")]
_AllOpt = Annotated[bool, typer.Option("--all", help="Every enrolled device of the fleet.")]
_WaitOpt = Annotated[bool, typer.Option("--wait", help="Wait for the answers (progress).")]
_TimeoutOpt = Annotated[
    float | None,
    typer.Option(
        "--timeout", help="Longest --wait in seconds (default: lifecycle rekey_timeout_s)."
    ),
]
_TargetArg = Annotated[str | None, typer.Argument(help="The device (or --model / --all).")]


def _register_reenroll(name: str, *, rekey: bool, doc: str) -> None:
    """``device rekey`` and ``device reenroll``: one command body, ``rekey`` tells them apart."""

    def command(
        home: HomeOpt,
        device_id: _TargetArg = None,
        model: _ModelOpt = None,
        fleet: _AllOpt = False,
        wait: _WaitOpt = False,
        timeout: _TimeoutOpt = None,
        json_out: JsonOpt = False,
    ) -> None:
        from trustfleet.cli._rekey import Target, run_reenroll

        target = Target(device_id=device_id, model=model, fleet=fleet)
        run_reenroll(home, target, rekey=rekey, wait=wait, timeout_s=timeout, json_out=json_out)

    command.__doc__ = doc
    command.__name__ = name
    app.command(name)(command)


_register_reenroll(
    "rekey",
    rekey=True,
    doc="""Devices generate new keys in their tokens and enroll them; old LDevIDs are superseded.

    The server must be running. Exits 1 when a device failed, or --wait ended with devices
    still pending (they keep their old keys and certificates, and keep working).
    """,
)
_register_reenroll(
    "reenroll",
    rekey=False,
    doc="""Devices renew their LDevIDs now (same keys); old LDevIDs are superseded.

    The server must be running. Exits 1 when a device failed, or --wait ended with devices
    still pending.
    """,
)


@app.command("commands")
def commands(
    home: HomeOpt,
    device_id: DeviceArg,
    limit: LimitOpt = 50,
    cursor: CursorOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """List the commands sent to a device and their answers, newest first."""
    from trustfleet.services.commands import list_device_commands

    with device_runtime(home) as rt:
        page = list_device_commands(rt, device_id, limit=limit, cursor=cursor)
    present_page(
        "commands", [_command_doc(c) for c in page.items], next_cursor=page.next_cursor,
        json_out=json_out, table=Table("command", "name", "state", "ok", "sent", "by", "result"),
        cells=lambda r: (
            r["id"], r["name"], r["state"], {True: "yes", False: "no", None: "-"}[r["ok"]],
            r["sent_at"][:19], r["actor"], _one_line(r["result"])[:60],
        ),
    )  # fmt: skip


def _one_line(value: Any) -> str:
    """A JSON value on one line (``-`` for None)."""
    return "-" if value is None else json.dumps(value, sort_keys=True, separators=(",", ":"))


_register_decommission(app)
