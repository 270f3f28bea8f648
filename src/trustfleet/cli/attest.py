"""``trustfleet attest …``: Remote attestation: challenge devices and read verdicts."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich.table import Table

from trustfleet.cli._common import (
    ACTOR,
    DEVICE_LIST_HINT,
    command_runtime,
    console,
    device_runtime,
    emit_json,
    hint_for_missing,
    interruptible,
    now,
    present_done,
    present_page,
)
from trustfleet.cli._options import CursorOpt, DeviceArg, HomeOpt, JsonOpt, LimitOpt
from trustfleet.errors import TrustFleetError, Unavailable

__all__ = ["app"]

app = typer.Typer(
    help="Remote attestation: challenge devices and read verdicts.", no_args_is_help=True
)

_POLL_S = 0.2


def _result_doc(rec: Any) -> dict[str, Any]:
    return {
        "challenge_id": rec.challenge_id,
        "verified_at": rec.verified_at.isoformat(),
        "ok": rec.ok,
        "release": rec.release,
        "reset_count": rec.reset_count,
        "restart_count": rec.restart_count,
        "clock": rec.clock,
        "findings": [dict(f) for f in rec.findings],
    }


def _quarantine_doc(q: Any) -> dict[str, Any] | None:
    if q is None:
        return None
    return {"since": q.at.isoformat(), "reason": q.reason, "by": q.by, "release": q.release}


@app.command("status")
def status(
    home: HomeOpt,
    device_id: DeviceArg,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000, help="Verdicts shown.")] = 10,
    json_out: JsonOpt = False,
) -> None:
    """Show a device's attestation key, its last verdicts with findings, and its quarantine."""
    from trustfleet.services.queries import attestation_status

    with device_runtime(home) as rt:
        found = attestation_status(rt, device_id, limit=limit)
    device, key = found.device, found.key
    doc = {
        "device_id": device.id,
        "model": device.model,
        "state": device.state,
        "ak": None
        if key is None
        else {"name": key.ak_name, "activated_at": key.activated_at.isoformat()},
        "quarantine": _quarantine_doc(found.quarantine),
        "results": [_result_doc(r) for r in found.results],
    }
    if json_out:
        emit_json(doc)
        return
    _print_status(doc)


def _print_status(doc: dict[str, Any]) -> None:
    ak = doc["ak"]
    console.print(f"[bold]{doc['device_id']}[/]  model={doc['model']}  state={doc['state']}")
    console.print(f"AK: {ak['name'] + ' (since ' + ak['activated_at'] + ')' if ak else 'none'}")
    q = doc["quarantine"]
    if q:
        console.print(f"[red]quarantined[/] since {q['since']} by {q['by']}: {q['reason']}")
    else:
        console.print("not quarantined")
    table = Table("verified at", "verdict", "release", "findings")
    for r in doc["results"]:
        codes = ", ".join(f"{f['code']} ({f['severity']})" for f in r["findings"]) or "-"
        verdict = "[green]pass[/]" if r["ok"] else "[red]FAIL[/]"
        table.add_row(r["verified_at"], verdict, r["release"] or "-", codes)
    console.print(table)


@app.command("run")
def run(
    home: HomeOpt,
    device_id: DeviceArg,
    wait: Annotated[
        float, typer.Option("--wait", min=0, max=3600, help="Seconds to wait for the verdict.")
    ] = 30.0,
    json_out: JsonOpt = False,
) -> None:
    """Challenge a device now and wait for its verdict (exit 1 when it fails)."""
    from trustfleet.server import publish_challenge
    from trustfleet.services.attestation import challenge_message, issue_challenge

    with command_runtime(home) as rt:
        with _attest_hints(), hint_for_missing(DEVICE_LIST_HINT):
            challenge = issue_challenge(rt, device_id=device_id, now=now(), trigger="operator")
        _topic, payload = challenge_message(device_id, challenge)
        publish_challenge(rt.settings, device_id, payload)
        sent = (
            f"challenge {challenge.id} was sent to {device_id}; its verdict will show in "
            f"'trustfleet attest status {device_id}'"
        )
        with interruptible(lambda: sent):
            result = _wait_verdict(rt, challenge.id, device_id=device_id, wait_s=wait)
    doc = {"device_id": device_id, **_result_doc(result)}
    if json_out:
        emit_json(doc)
    else:
        verdict = "[green]pass[/]" if result.ok else "[red]FAIL[/]"
        console.print(f"{device_id}: {verdict} (release {result.release or '-'})")
        for f in doc["findings"]:
            console.print(f"  {f['severity']}: {f['code']}: {f['message']}")
    if not result.ok:
        raise typer.Exit(code=1)


@contextmanager
def _attest_hints() -> Iterator[None]:
    """Hints for an operator on why a device cannot be challenged (not the wire protocol)."""
    try:
        yield
    except TrustFleetError as exc:
        if exc.code == "attestation.ak.missing":
            exc.hint = (
                "it has no TPM attestation key: devices provisioned before their model had a "
                "published release get no TPM (docs/attestation.md); provision new ones after "
                "'trustfleet release publish'"
            )
        elif exc.code == "attestation.device.state":
            exc.hint = "only an enrolled device is challenged: start its agent so it enrolls"
        raise


def _wait_verdict(rt: Any, challenge_id: str, *, device_id: str, wait_s: float) -> Any:
    from trustfleet.services.queries import attestation_result

    deadline = time.monotonic() + wait_s
    while True:
        result = attestation_result(rt, challenge_id)
        if result is not None:
            return result
        if time.monotonic() >= deadline:
            raise Unavailable(
                f"no verdict from {device_id} within {wait_s:g} s",
                hint="is the device online? see 'trustfleet attest status'",
                code="attestation.timeout",
            )
        time.sleep(_POLL_S)


@app.command("quarantine")
def quarantine(
    home: HomeOpt,
    device_id: DeviceArg,
    reason: Annotated[str, typer.Option("--reason", help="Why (recorded in the event log).")],
    json_out: JsonOpt = False,
) -> None:
    """Quarantine a device: its broker access shrinks to its ota/ and attest/ topics."""
    from trustfleet.services.attestation import quarantine as impose

    with device_runtime(home) as rt:
        impose(rt, device_id, reason=reason, actor=ACTOR, now=now())
    doc = {"device_id": device_id, "quarantined": True, "reason": reason}
    present_done(doc, json_out=json_out, line=f"device [bold]{device_id}[/] quarantined")


@app.command("lift")
def lift(home: HomeOpt, device_id: DeviceArg, json_out: JsonOpt = False) -> None:
    """Lift a device's quarantine (its broker access is whole again)."""
    from trustfleet.services.attestation import lift_quarantine

    with device_runtime(home) as rt:
        lift_quarantine(rt, device_id, actor=ACTOR, now=now())
    doc = {"device_id": device_id, "quarantined": False}
    present_done(doc, json_out=json_out, line=f"device [bold]{device_id}[/] quarantine lifted")


# The name before 0.x: "release" read as a firmware release. Kept, hidden, for scripts.
app.command("release", hidden=True)(lift)


@app.command("list")
def list_devices(
    home: HomeOpt,
    quarantined: Annotated[
        bool, typer.Option("--quarantined", help="Only quarantined devices.")
    ] = False,
    limit: LimitOpt = 1000,
    cursor: CursorOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """List devices with an attestation key or in quarantine, with their last verdict."""
    from trustfleet.services.queries import attestation_overview

    with command_runtime(home) as rt:
        page = attestation_overview(rt, only_quarantined=quarantined, limit=limit, cursor=cursor)
    rows = [
        {
            "device_id": r.device_id,
            "ak": r.has_key,
            "last": None if r.last is None else _result_doc(r.last),
            "quarantine": r.quarantine.reason if r.quarantine else None,
        }
        for r in page.items
    ]
    present_page(
        "devices", rows, next_cursor=page.next_cursor, json_out=json_out,
        table=Table("device", "AK", "last verdict", "quarantined"), cells=_list_cells,
    )  # fmt: skip


def _list_cells(r: Mapping[str, Any]) -> tuple[str, ...]:
    last = r["last"]
    verdict = "-" if last is None else ("pass" if last["ok"] else "FAIL")
    return (r["device_id"], "yes" if r["ak"] else "no", verdict, r["quarantine"] or "-")
