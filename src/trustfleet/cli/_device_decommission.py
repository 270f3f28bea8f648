"""``trustfleet device decommission ID`` and ``device decommissions``: disposal with wipe
evidence (docs/lifecycle.md). Registered on the ``device`` group by ``cli/device.py``."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated, Any, Final

import typer
from rich.table import Table

from trustfleet.cli._common import (
    ACTOR,
    console,
    device_runtime,
    emit_json,
    now,
    present_page,
    stderr,
)
from trustfleet.cli._options import DeviceArg, HomeOpt, JsonOpt, LimitOpt
from trustfleet.errors import NotFound

if TYPE_CHECKING:
    from trustfleet.services.runtime import Runtime
    from trustfleet.store.lifecycle_records import DecommissionRecord

__all__ = ["decommission_summary", "register", "shown_state"]

POLL_S: Final = 0.25
MAX_TIMEOUT_S: Final = 3600.0


def _doc(record: DecommissionRecord) -> dict[str, Any]:
    shown = {"pending": "pending", "verified": "decommissioned",
             "unverified": "decommissioned (unverified)"}[record.state]  # fmt: skip
    return {
        "device_id": record.device_id, "state": record.state, "shown": shown,
        "flagged": record.state == "unverified", "requested_by": record.requested_by,
        "requested_at": record.requested_at.isoformat(), "deadline": record.deadline.isoformat(),
        "completed_at": record.completed_at.isoformat() if record.completed_at else None,
        "reason": record.reason, "evidence": None if record.evidence is None else
        dict(record.evidence),
    }  # fmt: skip


def _present(record: DecommissionRecord, *, json_out: bool) -> None:
    doc = _doc(record)
    if json_out:
        emit_json(doc)
    elif record.state == "verified":
        console.print(f"[green]✓[/] device [bold]{record.device_id}[/] decommissioned: "
                      "wipe evidence verified, every certificate revoked")  # fmt: skip
    elif record.state == "unverified":
        console.print(f"[yellow]![/] device [bold]{record.device_id}[/] decommissioned "
                      f"[yellow](unverified)[/]: {record.reason}")  # fmt: skip
    else:
        console.print(f"[green]✓[/] asked [bold]{record.device_id}[/] to wipe itself; "
                      f"verified or unverified by {record.deadline.isoformat()[:19]}")  # fmt: skip


def decommission(
    home: HomeOpt,
    device_id: DeviceArg,
    offline: Annotated[
        bool, typer.Option("--offline", help="The device is gone: retire it now, unverified.")
    ] = False,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the outcome.")] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", min=1, max=MAX_TIMEOUT_S, help="With --wait: seconds.")
    ] = 120.0,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Decommission a device for good: it wipes its keys, TPM objects and sealed data and
    returns signed wipe evidence; every certificate is revoked (cessationOfOperation).

    A device that does not prove the wipe within the lifecycle decommission_timeout_s
    setting (or with --offline) ends 'decommissioned (unverified)'. The server must be
    running (except with --offline). With --wait, exits 1 unless the wipe was verified.
    """
    from trustfleet.services.decommission import (
        decommission_offline,
        get_decommission,
        request_decommission,
    )

    if not yes:
        what = "retire" if offline else "wipe and retire"
        typer.confirm(f"{what} device {device_id} for good?", abort=True)
    with device_runtime(home) as rt:
        if offline:
            record = decommission_offline(rt, device_id, actor=ACTOR, now=now())
        else:
            record = request_decommission(rt, None, device_id, actor=ACTOR, now=now()).decommission
        deadline = time.monotonic() + timeout
        while wait and record.state == "pending" and time.monotonic() < deadline:
            time.sleep(POLL_S)  # the server checks the evidence; bounded by --timeout
            record = get_decommission(rt, device_id)
    _present(record, json_out=json_out)
    if wait and record.state != "verified":
        if record.state == "pending":
            stderr.print(f"no verified wipe evidence from {device_id} within {timeout:g} s")
        raise typer.Exit(1)


def decommissions(
    home: HomeOpt,
    state: Annotated[
        str | None, typer.Option("--state", help="pending, verified or unverified.")
    ] = None,
    limit: LimitOpt = 50,
    json_out: JsonOpt = False,
) -> None:
    """List decommissions, newest first (unverified ones are flagged)."""
    from trustfleet.services.decommission import list_decommissions

    with device_runtime(home) as rt:
        records = list_decommissions(rt, state=state, limit=limit)
    present_page(
        "decommissions", [_doc(r) for r in records], next_cursor=None, json_out=json_out,
        table=Table("device", "state", "requested", "by", "completed", "reason"),
        cells=lambda r: (
            r["device_id"], ("[yellow]" + r["shown"] + "[/]") if r["flagged"] else r["shown"],
            r["requested_at"][:19], r["requested_by"], (r["completed_at"] or "-")[:19],
            (r["reason"] or "-")[:60],
        ),
    )  # fmt: skip


def decommission_summary(rt: Runtime, device_id: str) -> dict[str, Any] | None:
    """The device's decommission for ``device show`` (None: it has none)."""
    from trustfleet.services.decommission import get_decommission

    try:
        record = get_decommission(rt, device_id)
    except NotFound:
        return None
    doc = _doc(record)
    return {k: doc[k] for k in ("state", "shown", "flagged", "reason", "requested_at",
                                 "completed_at")}  # fmt: skip


def shown_state(state: str, summary: dict[str, Any] | None) -> str:
    """``decommissioned (unverified)`` (flagged) when the wipe was not proven; else the state."""
    if state == "decommissioned" and summary is not None and summary["flagged"]:
        return "[yellow]decommissioned (unverified)[/]"
    return state


def register(app: typer.Typer) -> None:
    """Add ``decommission`` and ``decommissions`` to the ``device`` group."""
    app.command("decommission")(decommission)
    app.command("decommissions")(decommissions)
