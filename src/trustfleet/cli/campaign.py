"""``trustfleet campaign …``: Roll a release out to the fleet in waves."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import typer
from rich.table import Table

from trustfleet.cli._common import (
    ACTOR,
    CursorOpt,
    HomeOpt,
    JsonOpt,
    LimitOpt,
    command_runtime,
    console,
    emit_json,
    now,
    present_page,
)

__all__ = ["app"]

app = typer.Typer(help="Roll a release out to the fleet in waves.", no_args_is_help=True)

MAX_DEVICES_OPTION_CHARS = 1_000_000
"""Bound on the ``--devices`` list as typed."""

IdArg = Annotated[
    str,
    typer.Argument(help="Campaign id, or a unique start of it (see 'trustfleet campaign list')."),
]
SHORT_ID_CHARS = 12
"""``campaign list`` shows ids this long (``cmp-`` and 8 hex digits); any unique start works."""


def _campaign_doc(c: Any) -> dict[str, Any]:
    return {
        "id": c.id,
        "model": c.model,
        "version": c.version,
        "state": c.state,
        "waves": list(c.waves),
        "current_wave": c.current_wave,
        "max_failure_rate": c.max_failure_rate,
        "device_timeout_s": c.device_timeout_s,
        "reason": c.reason,
        "created_at": c.created_at.isoformat(),
        "updated_at": c.updated_at.isoformat(),
    }


def _device_list(text: str | None) -> list[str] | None:
    from trustfleet.errors import InvalidInput

    if text is None:
        return None
    if len(text) > MAX_DEVICES_OPTION_CHARS:
        raise InvalidInput("the device list is too long", hint="target a model instead")
    devices = [d.strip() for d in text.split(",") if d.strip()]
    if not devices:
        raise InvalidInput("--devices names no device", hint="give ids separated by commas")
    return devices


@app.command("create")
def create(
    home: HomeOpt,
    release: Annotated[str, typer.Option("--release", help="Release version, e.g. 2.0.0.")],
    waves: Annotated[
        str, typer.Option("--waves", help="Cumulative percentages, e.g. 1,10,50,100%.")
    ],
    max_failure_rate: Annotated[
        str, typer.Option("--max-failure-rate", help="Halt above this failure rate, e.g. 5%.")
    ],
    model: Annotated[
        str | None, typer.Option("--model", help="Hardware model (default: from the release).")
    ] = None,
    devices: Annotated[
        str | None,
        typer.Option("--devices", help="Comma-separated device ids (default: all enrolled)."),
    ] = None,
    device_timeout: Annotated[
        str | None,
        typer.Option("--device-timeout", help="Time a device has to finish, e.g. 30m."),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Create a campaign; the running server notifies its waves."""
    from trustfleet.ota.campaign_rules import parse_duration, parse_rate, parse_waves
    from trustfleet.services.campaigns import create_campaign

    wave_list = parse_waves(waves)
    rate = parse_rate(max_failure_rate)
    timeout_s = parse_duration(device_timeout) if device_timeout is not None else None
    targets = _device_list(devices)
    with command_runtime(home) as rt:
        campaign = create_campaign(
            rt, version=release, model=model, devices=targets, waves=wave_list,
            max_failure_rate=rate, device_timeout_s=timeout_s, actor=ACTOR, now=now(),
        )  # fmt: skip
        status = _status(rt, campaign.id)
    if json_out:
        emit_json(status)
        return
    sizes = ", ".join(str(w["size"]) for w in status["waves"][1:])
    left_out = len(status["excluded"])
    console.print(
        f"[green]✓[/] campaign [bold]{campaign.id}[/]: {campaign.model} {campaign.version}, "
        f"waves of {sizes} device(s), {status['up_to_date']} already up to date, "
        f"{left_out} left out ({campaign.state})",
        soft_wrap=True,
    )
    for row in status["excluded"]:
        console.print(f"  left out {row['device_id']}: {row['reason']}", soft_wrap=True)


def _status(rt: Any, campaign_id: str) -> dict[str, Any]:
    from trustfleet.services.campaigns import campaign_status

    s = campaign_status(rt, campaign_id)
    wave0 = [d for d in s.devices if d.wave == 0]
    return {
        "up_to_date": s.waves[0].states.get("up_to_date", 0),
        "excluded": [
            {"device_id": d.device_id, "reason": d.reason, "code": d.code}
            for d in wave0
            if d.state != "up_to_date"
        ],
        **_campaign_doc(s.campaign),
        "failure_rate": s.failure_rate,
        "failures": s.failures,
        "finished": s.finished,
        "states": dict(s.states),
        "waves": [
            {"wave": w.wave, "percent": w.percent, "size": w.size, "states": dict(w.states)}
            for w in s.waves
        ],
        "devices": [
            {
                "device_id": d.device_id, "wave": d.wave, "state": d.state, "bytes": d.bytes,
                "total": d.total, "reason": d.reason, "code": d.code,
                "notified_at": d.notified_at.isoformat() if d.notified_at else None,
            }
            for d in s.devices
        ],
    }  # fmt: skip


@app.command("status")
def status(home: HomeOpt, campaign_id: IdArg, json_out: JsonOpt = False) -> None:
    """Show a campaign: its waves, the devices per state and the failure rate."""
    with command_runtime(home) as rt:
        doc = _status(rt, campaign_id)
    if json_out:
        emit_json(doc)
        return
    rate = "-" if doc["failure_rate"] is None else f"{doc['failure_rate']:.1%}"
    console.print(
        f"[bold]{doc['id']}[/]  {doc['model']} {doc['version']}  state={doc['state']}  "
        f"wave {doc['current_wave']}/{len(doc['waves']) - 1}  failure rate {rate} "
        f"(max {doc['max_failure_rate']:.1%})",
        soft_wrap=True,
    )
    if doc["reason"]:
        console.print(f"  reason: {doc['reason']}")
    for row in doc["excluded"]:
        console.print(f"  left out {row['device_id']}: {row['reason']}", soft_wrap=True)
    states = sorted({s for w in doc["waves"] for s in w["states"]})
    table = Table("wave", "up to %", "devices", *states)
    for w in doc["waves"]:
        label = "0 (up to date / left out)" if w["wave"] == 0 else str(w["wave"])
        counts = [str(w["states"].get(s, "")) for s in states]
        table.add_row(label, f"{w['percent']:g}", str(w["size"]), *counts)
    console.print(table)


@app.command("list")
def list_campaigns(
    home: HomeOpt, limit: LimitOpt = 1000, cursor: CursorOpt = None, json_out: JsonOpt = False
) -> None:
    """List campaigns, newest first, one page at a time."""
    from trustfleet.services.queries import list_campaigns as query

    with command_runtime(home) as rt:
        page = query(rt, limit=limit, cursor=cursor)
    docs = [_campaign_doc(c) for c in page.items]
    present_page(
        "campaigns", docs, next_cursor=page.next_cursor, json_out=json_out,
        table=Table("campaign", "model", "version", "state", "wave", "created (UTC)"),
        cells=_list_cells,
    )  # fmt: skip
    if docs and not json_out:
        console.print("ids are shortened: any unique start of an id names the campaign")


def _list_cells(d: Mapping[str, Any]) -> tuple[str, ...]:
    wave = f"{d['current_wave']}/{len(d['waves'])}"
    created = d["created_at"][:16].replace("T", " ")
    return (d["id"][:SHORT_ID_CHARS], d["model"], d["version"], d["state"], wave, created)


def _change(home: Any, campaign_id: str, action: str, json_out: bool) -> None:
    from trustfleet.services import campaigns

    with command_runtime(home) as rt:
        record = getattr(campaigns, action)(rt, campaign_id, now=now(), actor=ACTOR)
    if json_out:
        emit_json(_campaign_doc(record))
        return
    console.print(f"[green]✓[/] campaign [bold]{record.id}[/] is {record.state}")


@app.command("pause")
def pause(home: HomeOpt, campaign_id: IdArg, json_out: JsonOpt = False) -> None:
    """Stop notifying devices (devices already updating go on)."""
    _change(home, campaign_id, "pause", json_out)


@app.command("resume")
def resume(home: HomeOpt, campaign_id: IdArg, json_out: JsonOpt = False) -> None:
    """Continue a paused campaign."""
    _change(home, campaign_id, "resume", json_out)


@app.command("retry")
def retry(home: HomeOpt, campaign_id: IdArg, json_out: JsonOpt = False) -> None:
    """Give a campaign's failed devices another try, once the cause is fixed (also if halted)."""
    _change(home, campaign_id, "retry", json_out)


@app.command("abort")
def abort(home: HomeOpt, campaign_id: IdArg, json_out: JsonOpt = False) -> None:
    """End a campaign for good (running, paused or halted)."""
    _change(home, campaign_id, "abort", json_out)
