"""The firmware update driver of the LwM2M server (object 5, pull; OMA LwM2M 1.1 Core TS E.6),
and the packages it points devices to (``/fw/<model>/<version>/{manifest,image}``, Block2).

Every ``[lwm2m] firmware_check_s`` the server hands it the registrations; for a device that
lists object 5 and has a job (``Lwm2mBackend.firmware_job``) it writes Package URI ``/5/0/1``,
observes State ``/5/0/3`` and Update Result ``/5/0/5``, executes Update ``/5/0/2`` when the
device reports Downloaded, and reports every change through ``record_firmware_state``. The
rules are the pure ones of :mod:`trustfleet.lwm2m.firmware`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Iterable, Sequence
from datetime import datetime
from typing import Final, Protocol

from trustfleet.errors import InvalidInput, NotFound, TrustFleetError
from trustfleet.lwm2m import content, firmware
from trustfleet.lwm2m._blockwise import block_slice, etag_for, read_block
from trustfleet.lwm2m._responses import respond
from trustfleet.lwm2m.coap import Code, Message
from trustfleet.lwm2m.ports import Lwm2mBackend, Registration

__all__ = ["DeviceOperations", "FirmwareDriver"]

logger = logging.getLogger(__name__)

OBSERVED: Final = (firmware.STATE, firmware.UPDATE_RESULT)


class DeviceOperations(Protocol):
    """What the driver asks of the server (``Lwm2mServer``)."""

    async def read(self, device_id: str, path: str) -> tuple[content.Value, ...]:
        """Read a path."""
        ...

    async def write(self, device_id: str, path: str, values: Sequence[content.Value]) -> None:
        """Write resources."""
        ...

    async def observe(self, device_id: str, path: str) -> tuple[content.Value, ...]:
        """Observe a path; its current values."""
        ...

    async def execute(self, device_id: str, path: str, *, arguments: bytes = b"") -> None:
        """Execute a resource."""
        ...


def _lists_object_5(registration: Registration) -> bool:
    return any(p == "/5" or p.startswith("/5/") for p in registration.objects)


class FirmwareDriver:
    """One firmware job per device at a time, in memory.

    Args:
        ops: The server's device operations.
        backend: Jobs and state reports.
        spawn: Runs a coroutine in the background (the server's task set).
        now: Wall-clock time for the backend.
    """

    def __init__(
        self,
        ops: DeviceOperations,
        backend: Lwm2mBackend,
        *,
        spawn: Callable[[Coroutine[object, object, None]], None],
        now: Callable[[], datetime],
    ) -> None:
        self._ops = ops
        self._backend = backend
        self._spawn = spawn
        self._now = now
        self._jobs: dict[str, firmware.FirmwareProgress] = {}
        self._unread: set[str] = set()
        """Registered devices listing object 5 whose State was not read since they registered."""

    async def serve(
        self, message: Message, *, model: str, version: str, part: str, block_size: int
    ) -> Message:
        """A block (Block2) of a published release's manifest or image (``GET /fw/...``); the
        image is read from disk block by block, never whole.

        Raises:
            NotFound: No such release (code ``lwm2m.fw.unknown``).
        """
        job = await asyncio.to_thread(self._backend.firmware_package, model, version)
        if job is None:
            raise NotFound("No such firmware package.", code="lwm2m.fw.unknown")
        block = message.block2()
        if part == "manifest":
            piece = block_slice(block, total=len(job.manifest), block_size=block_size)
            data = job.manifest[piece.offset : piece.offset + piece.length]
            etag = etag_for(job.manifest)
        else:
            piece = block_slice(block, total=job.image_size, block_size=block_size)
            data = await asyncio.to_thread(read_block, job.image, piece)
            etag = etag_for(job.image_sha256)
        return respond(
            message,
            Code.CONTENT,
            payload=data,
            options=piece.options(etag=etag),
            content_format=content.OPAQUE,
        )

    def registered(self, device_id: str) -> None:
        """The device (listing object 5) registered: read its State at the next check if it has
        no job then."""
        self._unread.add(device_id)

    def dropped(self, device_id: str) -> None:
        """The device's registration ended."""
        self._unread.discard(device_id)

    def active(self, device_id: str) -> bool:
        """Whether a job of this device is in progress."""
        return device_id in self._jobs

    async def check(self, registrations: Iterable[Registration]) -> None:
        """Start the jobs waiting for registered devices that list object 5."""
        for registration in registrations:
            device_id = registration.device_id
            if device_id in self._jobs or not _lists_object_5(registration):
                continue
            job = await asyncio.to_thread(self._backend.firmware_job, device_id, now=self._now())
            if job is None:
                if device_id in self._unread:
                    self._unread.discard(device_id)
                    try:
                        await self.snapshot(device_id)
                    except TrustFleetError as exc:
                        logger.warning("lwm2m: firmware state of %s: %s", device_id, exc.one_line())
                continue
            self._unread.discard(device_id)
            self._jobs[device_id] = firmware.FirmwareProgress(version=job.version)
            uri = content.Value(path=firmware.PACKAGE_URI, value=job.package_uri)
            try:
                await self._ops.write(device_id, firmware.PACKAGE_URI, [uri])
                await self.observe(device_id)
            except TrustFleetError as exc:
                self._jobs.pop(device_id, None)
                logger.warning("lwm2m: firmware for %s: %s", device_id, exc.one_line())

    async def snapshot(self, device_id: str) -> None:
        """Read State and Update Result of a device without a firmware job and record them
        (once after each registration, from :meth:`check`), so the store shows object 5 before
        any campaign; a device with a job is left to the job (whose reports carry the version).
        """
        if self.active(device_id):
            return
        reported: dict[str, int] = {}
        for path in OBSERVED:
            for value in await self._ops.read(device_id, path):
                if value.path == path and isinstance(value.value, int):
                    reported[path] = int(value.value)
        state = reported.get(firmware.STATE)
        result = reported.get(firmware.UPDATE_RESULT, int(firmware.Result.INITIAL))
        if state is None or state not in firmware.State.__members__.values():
            return
        if result not in firmware.Result.__members__.values():
            return
        await asyncio.to_thread(
            self._backend.record_firmware_state,
            device_id,
            version=None,
            state=state,
            result=result,
            now=self._now(),
        )

    async def observe(self, device_id: str) -> None:
        """Observe State and Update Result (again, after the device registered again)."""
        for path in OBSERVED:
            self.report(device_id, await self._ops.observe(device_id, path))

    def report(self, device_id: str, values: Sequence[content.Value]) -> None:
        """The device reported object 5 values (a response or a notification)."""
        progress = self._jobs.get(device_id)
        if progress is None:
            return
        before = progress
        for value in values:
            if value.path in OBSERVED:
                try:
                    progress = firmware.apply(progress, path=value.path, value=value.value)
                except InvalidInput:
                    continue
        action = firmware.next_action(progress)
        if action == "execute":
            progress = firmware.FirmwareProgress(
                version=progress.version, state=progress.state, result=progress.result,
                executed=True,
            )  # fmt: skip
            self._spawn(self._execute(device_id))
        if action in ("succeeded", "failed"):
            self._jobs.pop(device_id, None)
        else:
            self._jobs[device_id] = progress
        if (progress.state, progress.result) != (before.state, before.result) or action != "wait":
            self._spawn(self._record(device_id, progress))

    async def _execute(self, device_id: str) -> None:
        try:
            await self._ops.execute(device_id, firmware.UPDATE)
        except TrustFleetError as exc:
            logger.warning("lwm2m: update of %s: %s", device_id, exc.one_line())

    async def _record(self, device_id: str, progress: firmware.FirmwareProgress) -> None:
        try:
            await asyncio.to_thread(
                self._backend.record_firmware_state,
                device_id,
                version=progress.version,
                state=int(progress.state),
                result=int(progress.result),
                now=self._now(),
            )
        except TrustFleetError as exc:
            logger.warning("lwm2m: firmware state of %s: %s", device_id, exc.one_line())
