"""``trustfleet device …``: list, show, revoke devices and re-open their enrollment."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from trustfleet.cli._common import (
    ACTOR,
    DEVICE_LIST_HINT,
    CursorOpt,
    HomeOpt,
    JsonOpt,
    LimitOpt,
    command_runtime,
    console,
    emit_json,
    hint_for_missing,
    now,
    present_page,
)

__all__ = ["app"]

app = typer.Typer(
    help="Inspect and revoke devices; re-open an enrolled device's enrollment.",
    no_args_is_help=True,
)

DeviceArg = Annotated[str, typer.Argument(help="Device id.")]


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


@app.command("list")
def list_devices(
    home: HomeOpt,
    state: Annotated[
        str | None, typer.Option("--state", help="Only devices in this state.")
    ] = None,
    limit: LimitOpt = 1000,
    cursor: CursorOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """List devices ordered by id, one page at a time."""
    from trustfleet.services.queries import list_devices as query

    with command_runtime(home) as rt:
        page = query(rt, state=state, limit=limit, cursor=cursor)
    rows = [
        {"id": d.id, "model": d.model, "state": d.state, "created_at": d.created_at.isoformat()}
        for d in page.items
    ]
    present_page(
        "devices", rows, next_cursor=page.next_cursor, json_out=json_out,
        table=Table("device", "model", "state", "registered"),
        cells=lambda r: (r["id"], r["model"], r["state"], r["created_at"]),
    )  # fmt: skip


@app.command("show")
def show(
    home: HomeOpt,
    device_id: DeviceArg,
    json_out: JsonOpt = False,
) -> None:
    """Show one device and its certificates."""
    from trustfleet.services.queries import device_detail

    with command_runtime(home) as rt, hint_for_missing(DEVICE_LIST_HINT):
        detail = device_detail(rt, device_id)
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
    }
    if json_out:
        emit_json(doc)
        return
    console.print(f"[bold]{device.id}[/]  model={device.model}  state={device.state}")
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

    with command_runtime(home) as rt, hint_for_missing(DEVICE_LIST_HINT):
        revoked = revoke_device(rt, device_id, reason=reason, actor=ACTOR, now=now())
    doc = {"device_id": device_id, "reason": reason, "revoked": [_cert_row(r) for r in revoked]}
    if json_out:
        emit_json(doc)
        return
    console.print(
        f"[green]✓[/] device [bold]{device_id}[/] revoked ({len(revoked)} certificate(s))"
    )


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

    with command_runtime(home) as rt, hint_for_missing(DEVICE_LIST_HINT):
        done = reopen_enrollment(rt, device_id, actor=ACTOR, reason=reason, now=now())
    doc = {
        "device_id": done.device_id,
        "expires_at": done.expires_at.isoformat(),
        "event_id": done.event_id,
        "already_open": done.already_open,
    }
    if json_out:
        emit_json(doc)
        return
    again = " (it was open already)" if done.already_open else ""
    console.print(
        f"[green]✓[/] device [bold]{device_id}[/] may enroll once with its IDevID until "
        f"{doc['expires_at']}{again}"
    )
