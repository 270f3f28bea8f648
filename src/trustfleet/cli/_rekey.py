"""``device reenroll`` and ``device rekey``: send ``reenroll`` to devices, wait with progress."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from trustfleet.cli._common import console, device_runtime, emit_json, now, stderr
from trustfleet.errors import InvalidInput

if TYPE_CHECKING:
    from trustfleet.services.rekey import ReenrollProgress
    from trustfleet.services.runtime import Runtime
    from trustfleet.store import DeviceCommandRecord

__all__ = ["Target", "run_reenroll"]

POLL_S: Final = 0.5
"""How often ``--wait`` reads the store for the answers."""
MAX_TIMEOUT_S: Final = 7 * 24 * 3600.0


@dataclass(frozen=True)
class Target:
    """Which devices: one id, a model, or ``fleet`` (every enrolled device)."""

    device_id: str | None
    model: str | None
    fleet: bool


def run_reenroll(
    home: Path,
    target: Target,
    *,
    rekey: bool,
    wait: bool,
    timeout_s: float | None,
    json_out: bool,
) -> None:
    """Select, send (bounded rate, with progress), optionally wait; print; exit 1 on failures.

    Raises:
        InvalidInput: A bad selection or timeout.
        Unavailable: The broker cannot be reached (is the server running?).
    """
    from trustfleet.audit.context import current_operator  # keeps --help fast
    from trustfleet.services.rekey import targeted_devices

    if timeout_s is not None and not 0 < timeout_s <= MAX_TIMEOUT_S:
        raise InvalidInput(
            f"--timeout must be between 0 and {MAX_TIMEOUT_S:.0f} seconds",
            hint="e.g. --timeout 600",
            code="rekey.timeout",
        )
    with device_runtime(home) as rt:
        ids = targeted_devices(
            rt, device_id=target.device_id, model=target.model, fleet=target.fleet
        )
        sent = _send(rt, ids, rekey=rekey, actor=current_operator(), json_out=json_out)
        limit_s = timeout_s or rt.settings.lifecycle.rekey_timeout_s
        progress = _await(rt, sent, timeout_s=limit_s if wait else 0.0, json_out=json_out)
    _present(sent, progress, rekey=rekey, wait=wait, json_out=json_out)


def _bar(*, json_out: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
        disable=json_out,
    )


def _send(
    rt: Runtime, ids: list[str], *, rekey: bool, actor: str, json_out: bool
) -> list[DeviceCommandRecord]:
    from trustfleet.services.rekey import request_reenroll
    from trustfleet.services.service_mqtt import ServiceMqttClient  # awscrt

    if not ids:
        return []
    with _bar(json_out=json_out) as bar, ServiceMqttClient(rt.settings) as client:
        task = bar.add_task("commands sent", total=len(ids))
        return request_reenroll(
            rt, client, ids, rekey=rekey, actor=actor, now=now(),
            on_sent=lambda _record: bar.advance(task),
        )  # fmt: skip


def _await(
    rt: Runtime, sent: list[DeviceCommandRecord], *, timeout_s: float, json_out: bool
) -> ReenrollProgress:
    from trustfleet.services.rekey import reenroll_progress

    ids = [r.id for r in sent]
    state = reenroll_progress(rt, ids)
    if timeout_s <= 0 or not ids:
        return state
    deadline = time.monotonic() + timeout_s
    with _bar(json_out=json_out) as bar:
        task = bar.add_task(_describe(state), total=len(ids))
        while state.pending and time.monotonic() < deadline:
            time.sleep(POLL_S)  # polls the store for the answers, bounded by --timeout
            state = reenroll_progress(rt, ids)
            bar.update(task, completed=state.done + state.failed, description=_describe(state))
    return state


def _describe(state: ReenrollProgress) -> str:
    return f"done {state.done} · failed {state.failed} · pending {state.pending}"


def _present(
    sent: list[DeviceCommandRecord],
    state: ReenrollProgress,
    *,
    rekey: bool,
    wait: bool,
    json_out: bool,
) -> None:
    what = "rekey" if rekey else "reenroll"
    doc: dict[str, Any] = {
        "rekey": rekey,
        "devices": len(sent),
        "commands": [{"id": r.id, "device_id": r.device_id} for r in sent],
        "done": state.done,
        "failed": state.failed,
        "pending": state.pending,
        "failures": [{"device_id": d, "reason": why} for d, why in state.failures],
    }
    if json_out:
        emit_json(doc)
    elif not sent:
        console.print(f"no enrolled device matched: nothing to {what}")
    else:
        console.print(
            f"[green]✓[/] {what} sent to {len(sent)} device(s): done {state.done}, "
            f"failed {state.failed}, pending {state.pending}"
        )
        for device_id, why in state.failures:
            stderr.print(f"  {device_id}: {why}")
    if state.failed or (wait and state.pending):
        if not json_out and wait and state.pending:
            stderr.print(f"{state.pending} device(s) did not answer in time")
        raise typer.Exit(1)
