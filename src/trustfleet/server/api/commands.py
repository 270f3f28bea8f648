"""``/devices/{id}/commands`` and ``/commands/{id}``: ping and report, with their results."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from trustfleet.server.api._auth import CallerDep, guarded
from trustfleet.server.api._device_lists import DeviceId, PathId, device_list_route
from trustfleet.server.api._pagination import ItemsPage
from trustfleet.server.api.schemas import CommandIn, CommandOut
from trustfleet.services import commands as service
from trustfleet.services.rekey import rekey_device
from trustfleet.store import DeviceCommandRecord

__all__ = ["router"]

router = APIRouter(tags=["commands"])


def _present(rec: DeviceCommandRecord) -> CommandOut:
    return CommandOut(
        id=rec.id, device_id=rec.device_id, name=rec.name, args=dict(rec.args), actor=rec.actor,
        state=rec.state, sent_at=rec.sent_at, ok=rec.ok,
        result=None if rec.result is None else dict(rec.result), answered_at=rec.answered_at,
    )  # fmt: skip


device_list_route(
    router, "commands", response_model=ItemsPage[CommandOut],
    service=service.list_device_commands, present=_present, permission="fleet.read",
    doc="The commands sent to a device, newest first, with their results.",
)  # fmt: skip


@router.post(
    "/devices/{device_id}/commands",
    response_model=CommandOut,
    status_code=202,
    **guarded("devices.command"),
)
async def post_command(caller: CallerDep, device_id: DeviceId, body: CommandIn) -> Any:
    """Send ``ping`` or ``report`` to a device; poll ``/commands/{id}`` for its result."""
    rec = await caller.run(
        service.send_device_command, caller.rt, device_id, body.name, body.args,
        now=caller.clock(),
    )  # fmt: skip
    return _present(rec)


@router.post(
    "/devices/{device_id}/rekey",
    response_model=CommandOut,
    status_code=202,
    **guarded("devices.revoke"),
)
async def post_rekey(caller: CallerDep, device_id: DeviceId) -> Any:
    """The device makes a new key in its token and enrolls it; its old LDevID is superseded."""
    rec = await caller.run(
        rekey_device, caller.rt, device_id, rekey=True, actor=caller.principal.actor,
        now=caller.clock(),
    )  # fmt: skip
    return _present(rec)


@router.get("/commands/{command_id}", response_model=CommandOut, **guarded("fleet.read"))
async def get_command(caller: CallerDep, command_id: PathId) -> Any:
    """One command and, once the device answered, its result."""
    return _present(await caller.run(service.get_device_command, caller.rt, command_id))
