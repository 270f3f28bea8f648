"""``trustfleet alerts …``: security alerts, their lifecycle, and approving playbook actions."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Any, Final

import typer
from rich.table import Table

from trustfleet.cli._common import (
    ACTOR,
    command_runtime,
    console,
    emit_json,
    now,
    present_done,
    present_page,
)
from trustfleet.cli._options import CursorOpt, HomeOpt, JsonOpt, LimitOpt
from trustfleet.errors import InvalidInput

if TYPE_CHECKING:
    from trustfleet.store import AlertActionRecord, AlertRecord, NotificationRecord

__all__ = ["action_doc", "alert_doc", "app"]

app = typer.Typer(
    help="Security alerts: list, show, acknowledge, resolve, suppress; approve playbook actions.",
    no_args_is_help=True,
)

AlertArg = Annotated[int, typer.Argument(help="Alert id (see 'trustfleet alerts list').", min=1)]
ActionArg = Annotated[
    int, typer.Argument(help="Action id (see 'trustfleet alerts show ALERT_ID').", min=1)
]
_DURATION: Final = re.compile(r"([0-9]{1,6})([smhd])")
_UNIT_S: Final = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def alert_doc(a: AlertRecord) -> dict[str, Any]:
    """An alert as ``--json`` prints it."""
    return {
        "id": a.id, "device_id": a.device_id, "kind": a.kind, "severity": a.severity,
        "detector": a.detector, "state": a.state, "summary": a.summary,
        "evidence": dict(a.evidence), "findings": a.findings,
        "first_seen": _iso(a.first_seen), "last_seen": _iso(a.last_seen),
        "suppressed_until": _iso(a.suppressed_until), "updated_by": a.updated_by,
        "created_at": _iso(a.created_at), "updated_at": _iso(a.updated_at),
    }  # fmt: skip


def action_doc(a: AlertActionRecord) -> dict[str, Any]:
    """An alert's action as ``--json`` prints it."""
    return {
        "id": a.id, "alert_id": a.alert_id, "action": a.action, "mode": a.mode,
        "state": a.state, "decided_by": a.decided_by, "decided_at": _iso(a.decided_at),
        "result": a.result, "created_at": _iso(a.created_at),
    }  # fmt: skip


def _notification_doc(n: NotificationRecord) -> dict[str, Any]:
    return {
        "id": n.id, "channel": n.channel, "receiver": n.target, "state": n.state,
        "attempts": n.attempts, "next_attempt_at": _iso(n.next_attempt_at),
        "last_error": n.last_error, "sent_at": _iso(n.sent_at),
    }  # fmt: skip


@app.command("list")
def list_alerts(
    home: HomeOpt,
    state: Annotated[
        str | None, typer.Option("--state", help="open, acknowledged, resolved or suppressed.")
    ] = None,
    device: Annotated[str | None, typer.Option("--device", help="Only this device.")] = None,
    kind: Annotated[str | None, typer.Option("--kind", help="Only this kind.")] = None,
    severity: Annotated[
        str | None, typer.Option("--severity", help="low, medium, high or critical.")
    ] = None,
    limit: LimitOpt = 50,
    cursor: CursorOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """List alerts, most recently seen first, one page at a time."""
    from trustfleet.services.alerts import list_alerts as query

    with command_runtime(home) as rt:
        page = query(
            rt, state=state, device_id=device, kind=kind, severity=severity, limit=limit,
            cursor=cursor,
        )  # fmt: skip
    present_page(
        "alerts", [alert_doc(a) for a in page.items], next_cursor=page.next_cursor,
        json_out=json_out,
        table=Table("id", "device", "kind", "severity", "state", "findings", "last seen (UTC)"),
        cells=_cells,
    )  # fmt: skip


def _cells(d: Mapping[str, Any]) -> tuple[str, ...]:
    seen = str(d["last_seen"])[:19].replace("T", " ")
    return (str(d["id"]), d["device_id"], d["kind"], d["severity"], d["state"],
            str(d["findings"]), seen)  # fmt: skip


@app.command("show")
def show(home: HomeOpt, alert_id: AlertArg, json_out: JsonOpt = False) -> None:
    """Show an alert: its evidence, the actions the playbook asked for, its notifications."""
    from trustfleet.services.alerts import get_alert

    with command_runtime(home) as rt:
        detail = get_alert(rt, alert_id)
    doc = alert_doc(detail.alert)
    doc["actions"] = [action_doc(a) for a in detail.actions]
    doc["notifications"] = [_notification_doc(n) for n in detail.notifications]
    if json_out:
        emit_json(doc)
        return
    console.print(
        f"[bold]alert {doc['id']}[/]  {doc['device_id']}  {doc['kind']}  {doc['severity']}  "
        f"state={doc['state']}  findings={doc['findings']}",
        soft_wrap=True,
    )
    console.print(f"  {doc['summary']}", soft_wrap=True, markup=False)
    console.print(f"  first seen {doc['first_seen']}, last seen {doc['last_seen']}")
    table = Table("action id", "action", "mode", "state", "decided by", "result")
    for a in doc["actions"]:
        table.add_row(str(a["id"]), a["action"], a["mode"], a["state"], a["decided_by"] or "",
                      a["result"] or "")  # fmt: skip
    console.print(table)
    for n in doc["notifications"]:
        console.print(f"  notify {n['receiver']} ({n['channel']}): {n['state']}, "
                      f"{n['attempts']} attempt(s)", soft_wrap=True)  # fmt: skip


@app.command("ack")
def ack(home: HomeOpt, alert_id: AlertArg, json_out: JsonOpt = False) -> None:
    """Acknowledge an open alert (you have seen it)."""
    from trustfleet.services.alerts import acknowledge

    with command_runtime(home) as rt:
        alert = acknowledge(rt, alert_id, actor=ACTOR, now=now())
    present_done(alert_doc(alert), json_out=json_out, line=f"alert {alert_id} acknowledged")


@app.command("resolve")
def resolve(home: HomeOpt, alert_id: AlertArg, json_out: JsonOpt = False) -> None:
    """Resolve an alert; a later finding raises a new one."""
    from trustfleet.services.alerts import resolve as resolve_alert

    with command_runtime(home) as rt:
        alert = resolve_alert(rt, alert_id, actor=ACTOR, now=now())
    present_done(alert_doc(alert), json_out=json_out, line=f"alert {alert_id} resolved")


def parse_for(text: str) -> timedelta:
    """``90s``, ``30m``, ``2h``, ``7d``: a suppression's length.

    Raises:
        InvalidInput: Not such a duration (``alert.suppress.for``).
    """
    match = _DURATION.fullmatch(text.strip())
    if match is None or int(match.group(1)) == 0:
        raise InvalidInput(
            f"'{text[:40]}' is not a duration", hint="use a number with s, m, h or d, e.g. 2h",
            code="alert.suppress.for",
        )  # fmt: skip
    return timedelta(seconds=int(match.group(1)) * _UNIT_S[match.group(2)])


@app.command("suppress")
def suppress(
    home: HomeOpt,
    alert_id: AlertArg,
    for_: Annotated[str, typer.Option("--for", help="How long, e.g. 2h (at most 30d).")],
    json_out: JsonOpt = False,
) -> None:
    """Silence an alert for a while: its device's findings of its kind join it quietly."""
    from trustfleet.services.alerts import suppress as suppress_alert

    length = parse_for(for_)
    at = now()
    with command_runtime(home) as rt:
        alert = suppress_alert(rt, alert_id, until=at + length, actor=ACTOR, now=at)
    line = f"alert {alert_id} suppressed until {_iso(alert.suppressed_until)}"
    present_done(alert_doc(alert), json_out=json_out, line=line)


@app.command("approve")
def approve(home: HomeOpt, action_id: ActionArg, json_out: JsonOpt = False) -> None:
    """Approve a playbook action waiting for an operator, and do it now (exit 1 if it fails)."""
    from trustfleet.services.alerts import approve_action

    with command_runtime(home) as rt:
        action = approve_action(rt, action_id, actor=ACTOR, now=now())
    if json_out:
        emit_json(action_doc(action))
    elif action.state == "done":
        console.print(f"[green]✓[/] action {action_id} ({action.action}) done: {action.result}")
    else:
        console.print(f"[red]✗[/] action {action_id} ({action.action}) failed: {action.result}")
    if action.state != "done":
        raise typer.Exit(code=1)


@app.command("reject")
def reject(home: HomeOpt, action_id: ActionArg, json_out: JsonOpt = False) -> None:
    """Reject a playbook action waiting for an operator."""
    from trustfleet.services.alerts import reject_action

    with command_runtime(home) as rt:
        action = reject_action(rt, action_id, actor=ACTOR, now=now())
    line = f"action {action_id} ({action.action}) rejected"
    present_done(action_doc(action), json_out=json_out, line=line)
